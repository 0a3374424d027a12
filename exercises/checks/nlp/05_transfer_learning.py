"""Checks for nlp/05 (transfer learning for text): masked means against each text's own mean, a
stand-in model for the probe, and the closed form of transformers' `get_linear_schedule_with_warmup`
(tests/nlp checks that closed form against transformers itself)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.exercises import CheckFailed, expect, expect_close, expect_tensor


def check_mean_pool(mean_pool) -> None:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 6, 5, generator=g, dtype=torch.float64) * 3  # padding positions hold values too
    lengths = [6, 2, 4, 0]
    mask = (torch.arange(6) < torch.tensor(lengths)[:, None]).long()  # as the tokenizer gives it: int64
    expected = torch.stack([hidden[i, :n].mean(0) if n else torch.zeros(5, dtype=torch.float64)
                            for i, n in enumerate(lengths)])  # fmt: skip
    got = mean_pool(hidden.clone(), mask.clone())
    expect_tensor(got, expected, f"mean_pool(hidden (4, 6, 5), attention_mask) for {lengths} real tokens",
                  reference="each text's mean over its real tokens; the empty one: zeros")  # fmt: skip


class _Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed, self.dropout, self.norm = nn.Embedding(10, 6), nn.Dropout(0.5), nn.LayerNorm(6)

    def forward(self, ids):
        return self.norm(self.dropout(self.embed(ids))).mean(1)  # (B, 6)


class _Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder, self.head = _Encoder(), nn.Linear(6, 2)

    def forward(self, ids):
        return self.head(self.encoder(ids))


def check_freeze_encoder(freeze_encoder) -> None:
    torch.manual_seed(0)
    model = _Classifier()
    before = copy.deepcopy(model.state_dict())
    params = freeze_encoder(model)
    try:
        params = list(params)
    except TypeError:
        raise CheckFailed("freeze_encoder should return the head's parameters (a list)") from None
    head = {id(p) for p in model.head.parameters()}
    expect(
        not any(p.requires_grad for p in model.encoder.parameters()),
        "the encoder's parameters still have requires_grad=True: call model.encoder.requires_grad_(False)",
    )
    expect(
        all(p.requires_grad for p in model.head.parameters()),
        "the head's parameters have requires_grad=False: freeze the encoder only, the head must learn",
    )
    expect(
        {id(p) for p in params} == head and len(params) == len(head),
        f"freeze_encoder returned {len(params)} tensors; expected the head's {len(head)}: weight and bias",
    )
    expect(not model.encoder.training, "the encoder is still in training mode: its dropout changes the "
           "features at every pass; call model.encoder.eval()")  # fmt: skip
    ids = torch.randint(0, 10, (8, 5), generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1] * 4)
    first = model.encoder(ids)
    expect(torch.equal(first, model.encoder(ids)), "two passes of the frozen encoder differ: dropout is on")
    optimizer = torch.optim.SGD(params, lr=0.5)
    F.cross_entropy(model(ids), y).backward()
    optimizer.step()
    after = model.state_dict()
    for name, value in before.items():
        changed = not torch.equal(after[name], value)
        if name.startswith("encoder."):
            expect(not changed, f"{name} changed in a training step: the encoder must stay frozen")
        else:
            expect(changed, f"{name} did not change in a training step: the head must learn")


def _factor(step: int, warmup: int, total: int) -> float:  # transformers' get_linear_schedule_with_warmup
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def check_warmup_linear_schedule(warmup_linear_schedule) -> None:
    for warmup, total in ((3, 10), (0, 4)):
        optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
        scheduler = warmup_linear_schedule(optimizer, warmup, total)
        expect(
            isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler),
            "warmup_linear_schedule should return a scheduler (torch.optim.lr_scheduler.LambdaLR)",
        )
        for step in range(total + 3):  # and a few steps past the end
            what = f"the learning rate at step {step} (warmup_steps={warmup}, total_steps={total}, peak 0.1)"
            expect_close(optimizer.param_groups[0]["lr"], 0.1 * _factor(step, warmup, total), what, atol=1e-9)
            optimizer.step()
            scheduler.step()
