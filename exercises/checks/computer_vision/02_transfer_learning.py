"""Checks for computer_vision/02 (transfer learning): torchvision-shaped models, a real optimizer step."""

from __future__ import annotations

import torch
from torch import nn

from dlkit.exercises import expect


def _backbone() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )


class _Net(nn.Module):
    """Shaped like torchvision's classifiers: `features`, then a `classifier` that ends in a Linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.features = _backbone()
        self.classifier = nn.Sequential(nn.Linear(8, 16), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def check_freeze_all_but_head(freeze_all_but_head) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(_backbone(), nn.Linear(8, 3))
    head = model[1]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = freeze_all_but_head(model, head, 1e-2)
    expect(
        isinstance(optimizer, torch.optim.Optimizer), f"return the optimizer, got {type(optimizer).__name__}"
    )
    for name, p in model.named_parameters():
        in_head = name.startswith("1.")
        expect(
            p.requires_grad == in_head,
            f"parameter {name!r} has requires_grad={p.requires_grad}; "
            + (
                "the head must stay trainable"
                if in_head
                else "every backbone parameter (BatchNorm's weight and bias too) must be frozen"
            ),
        )
    given = {id(p) for group in optimizer.param_groups for p in group["params"]}
    expect(
        given == {id(p) for p in head.parameters()},
        f"the optimizer holds {len(given)} tensors; give it the head's {len(list(head.parameters()))} only "
        "(frozen weights have no gradient to follow)",
    )
    expect(all(group["lr"] == 1e-2 for group in optimizer.param_groups), "the optimizer should use lr=lr")
    model.train()
    loss = nn.functional.cross_entropy(model(torch.randn(6, 3, 5, 5)), torch.tensor([0, 1, 2, 0, 1, 2]))
    loss.backward()
    optimizer.step()
    for name, p in model.named_parameters():
        changed = not torch.equal(p.detach(), before[name])
        expect(
            changed == name.startswith("1."),
            f"after one step, parameter {name!r} "
            + ("changed: it should be frozen" if changed else "did not change: the head should learn"),
        )


def check_replace_head(replace_head) -> None:
    torch.manual_seed(1)
    model = _Net()
    kept = [model.classifier[i] for i in range(3)]
    weights = {
        name: p.detach().clone()
        for name, p in model.named_parameters()
        if not name.startswith("classifier.3")
    }
    out = replace_head(model, 4)
    expect(isinstance(out, nn.Module), "return the model (with its new head)")
    expect(
        len(out.classifier) == 4,
        f"the classifier has {len(out.classifier)} layer(s); it had 4: replace its last layer, do not append "
        "to it or rebuild it",
    )
    expect(
        all(out.classifier[i] is kept[i] for i in range(3)),
        "the classifier's hidden layers changed: keep them, replace only classifier[-1]",
    )
    last = out.classifier[-1]
    expect(
        isinstance(last, nn.Linear) and last.in_features == 16 and last.out_features == 4,
        f"classifier[-1] should be nn.Linear(16, 4) (in_features of the old layer, num_classes), got {last}",
    )
    expect(all(p.requires_grad for p in last.parameters()), "the new head must be trainable")
    for name, p in out.named_parameters():
        if name in weights:
            expect(torch.equal(p.detach(), weights[name]), f"{name!r} changed: keep the pretrained weights")
    out.eval()
    expect(
        tuple(out(torch.randn(2, 3, 6, 6)).shape) == (2, 4), "the model should output (batch, num_classes)"
    )


def check_layerwise_lr_groups(layerwise_lr_groups) -> None:
    torch.manual_seed(2)
    blocks = nn.ModuleList(
        [nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), nn.Linear(4, 4)]
    )
    head = nn.Linear(4, 2)
    groups = layerwise_lr_groups(blocks, head, 1e-3, 0.5)
    expect(
        isinstance(groups, list) and all(isinstance(g, dict) for g in groups),
        "return a list of dicts, each {'params': [...], 'lr': ...}",
    )
    optimizer = torch.optim.AdamW(groups, lr=1.0)  # raises if a parameter appears twice
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    expected = {id(p): 1e-3 for p in head.parameters()}
    for i, block in enumerate(blocks):
        expected |= {id(p): 1e-3 * 0.5 ** (len(blocks) - i) for p in block.parameters()}
    missing = len(set(expected) - set(lr_of))
    expect(missing == 0, f"{missing} parameters of the blocks or the head are in no group")
    for i, block in enumerate([*blocks, head]):
        name = f"block {i}" if i < len(blocks) else "the head"
        for p in block.parameters():
            expect(
                abs(lr_of[id(p)] - expected[id(p)]) < 1e-15,
                f"{name} has lr {lr_of[id(p)]:.3g}; expected {expected[id(p)]:.3g} (head: lr; the block "
                "next to it: lr * decay; the first block: lr * decay ** len(blocks))",
            )
