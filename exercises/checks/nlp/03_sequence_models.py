"""Checks for nlp/03 (sequence models): a packed `nn.LSTM`, `nn.utils.clip_grad_norm_` and a reference
truncated-BPTT run are the oracles."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from dlkit.exercises import CheckFailed, expect, expect_close, expect_tensor


def check_last_outputs(last_outputs) -> None:
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, batch_first=True, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4, 1])
    x = torch.randn(4, 6, 3, dtype=torch.float64) * (torch.arange(6) < lengths[:, None])[..., None]
    with torch.no_grad():
        outputs, _ = lstm(x)  # unpacked: reads the padding too
        _, (h_n, _) = lstm(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    got = last_outputs(outputs.clone(), lengths.clone())
    expect_tensor(got, h_n[0], f"last_outputs(outputs, lengths={lengths.tolist()})",
                  reference="h_n of the LSTM on the packed batch")  # fmt: skip


def _params(seed: int, scale: float) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    params = [torch.zeros(shape, dtype=torch.float64, requires_grad=True) for shape in ((3, 4), (4,), (2, 2))]
    for p in params[:2]:
        p.grad = torch.randn(p.shape, generator=g, dtype=torch.float64) * scale
    return params  # the last one has no gradient


def check_clip_grad_norm(clip_grad_norm) -> None:
    for scale, max_norm in ((3.0, 1.0), (0.05, 1.0)):  # clipped, then left alone
        ours, theirs = _params(0, scale), _params(0, scale)
        expected = nn.utils.clip_grad_norm_(theirs, max_norm)
        what = f"clip_grad_norm for gradients of total norm {expected.item():.3g}, max_norm {max_norm}"
        total = clip_grad_norm(ours, max_norm)
        expect(total is not None, f"{what} returned None: return the total norm before clipping")
        expect_close(total, expected.item(), f"the norm that {what} returned (before clipping)")
        expect(ours[2].grad is None, "a parameter without a gradient should keep .grad None")
        for i, (a, b) in enumerate(zip(ours[:2], theirs[:2], strict=True)):
            expect_tensor(a.grad, b.grad, f"parameter {i}'s .grad after {what}",
                          reference="nn.utils.clip_grad_norm_")  # fmt: skip


class _TinyLM(nn.Module):
    def __init__(self, vocab: int = 7, hidden: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 4)
        self.lstm = nn.LSTM(4, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        out, state = self.lstm(self.embed(x), state)
        return self.head(out), state


def _reference_epoch(model, optimizer, streams, seq_len) -> list[float]:
    state, losses = None, []
    for t in range(0, streams.shape[1] - 1, seq_len):
        X, y = streams[:, t : t + seq_len], streams[:, t + 1 : t + seq_len + 1]
        logits, state = model(X[:, : y.shape[1]], state)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        state = tuple(s.detach() for s in state)
        losses.append(loss.item())
    return losses


def check_tbptt_epoch(tbptt_epoch) -> None:
    torch.manual_seed(0)
    reference = _TinyLM().double()
    model = copy.deepcopy(reference)
    streams = torch.randint(0, 7, (3, 18), generator=torch.Generator().manual_seed(1))  # a short last chunk
    what = "tbptt_epoch(model, optimizer, streams (3, 18), seq_len=5)"
    try:
        got = tbptt_epoch(model, torch.optim.SGD(model.parameters(), lr=0.5), streams.clone(), 5)
    except RuntimeError as exc:
        if "backward through the graph a second time" not in str(exc):
            raise
        raise CheckFailed(
            f"{what}: the second backward ran into the first chunk's graph, already freed: "
            "detach the state you carry to the next chunk (retain_graph=True is not the fix: "
            "it would backpropagate through every chunk so far)"
        ) from None
    expected = _reference_epoch(reference, torch.optim.SGD(reference.parameters(), lr=0.5), streams, 5)
    try:
        got = [float(x) for x in got]
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} should return a list of the step losses (floats)") from None
    expect(len(got) == len(expected), f"{what} made {len(got)} steps; expected {len(expected)} (chunks "
           "start at t = 0, 5, 10, 15: the last one predicts the 2 characters left)")  # fmt: skip
    expect_close(got[0], expected[0], f"{what}: the first step's loss (next-character cross-entropy)")
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        expect_close(a, b, f"{what}: step {i}'s loss (is the state carried from chunk to chunk, and the "
                     "gradients zeroed before each backward?)")  # fmt: skip
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        expect_tensor(p, q, f"the weights {name} after {what}", reference="a reference run")
