"""Plausible wrong answers to nlp/03's exercises: each must make its check fail."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def last_outputs_at_the_end(outputs, lengths):
    return outputs[:, -1]  # the padded sequences' state after reading the padding


def last_outputs_off_by_one(outputs, lengths):
    return outputs[torch.arange(outputs.shape[0]), lengths.clamp(max=outputs.shape[1] - 1)]  # one step late


def clip_each_tensor_alone(parameters, max_norm):
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.cat([g.flatten() for g in grads]).norm()
    with torch.no_grad():
        for g in grads:  # each gradient clipped to max_norm on its own: the direction changes
            g.mul_(min(1.0, max_norm / (g.norm().item() + 1e-6)))
    return total


def clip_always_rescales(parameters, max_norm):
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.cat([g.flatten() for g in grads]).norm()
    with torch.no_grad():
        for g in grads:
            g.mul_(max_norm / (total + 1e-6))  # small gradients are blown up too
    return total


def clip_returns_norm_after(parameters, max_norm):
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.cat([g.flatten() for g in grads]).norm()
    if total > max_norm:
        with torch.no_grad():
            for g in grads:
                g.mul_(max_norm / (total + 1e-6))
    return torch.cat([g.flatten() for g in grads]).norm()


def _epoch(model, optimizer, streams, seq_len, *, carry=True, detach=True, zero_grad=True):
    state, losses = None, []
    for t in range(0, streams.shape[1] - 1, seq_len):
        X, y = streams[:, t : t + seq_len], streams[:, t + 1 : t + seq_len + 1]
        logits, state = model(X[:, : y.shape[1]], state if carry else None)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        state = tuple(s.detach() for s in state) if detach else state
        losses.append(loss.item())
    return losses


def tbptt_state_reset_each_chunk(model, optimizer, streams, seq_len):
    return _epoch(model, optimizer, streams, seq_len, carry=False)


def tbptt_no_detach(model, optimizer, streams, seq_len):
    return _epoch(model, optimizer, streams, seq_len, detach=False)  # backward through a freed graph


def tbptt_no_zero_grad(model, optimizer, streams, seq_len):
    return _epoch(model, optimizer, streams, seq_len, zero_grad=False)  # gradients pile up


WRONG = {
    "last_outputs": [last_outputs_at_the_end, last_outputs_off_by_one],
    "clip_grad_norm": [clip_each_tensor_alone, clip_always_rescales, clip_returns_norm_after],
    "tbptt_epoch": [tbptt_state_reset_each_chunk, tbptt_no_detach, tbptt_no_zero_grad],
}
