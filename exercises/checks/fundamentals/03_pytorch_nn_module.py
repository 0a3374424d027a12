"""Checks for fundamentals/03 (nn.Module): `nn.Linear`, `nn.LayerNorm` and `nn.BatchNorm1d` are the oracles.

Each check builds the learner's module with small sizes, copies the oracle's state into it with
`load_state_dict` (so the names and shapes of its parameters and buffers must match), and compares
outputs and gradients in float64.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dlkit.exercises import CheckFailed, expect, expect_no_grad, expect_tensor


def _expect_names(module: nn.Module, params: dict[str, tuple], buffers: dict[str, tuple], what: str) -> None:
    got = {n: tuple(p.shape) for n, p in module.named_parameters()}
    expect(
        got == params,
        f"{what}.named_parameters() is {got}; expected {params} (wrap learned tensors "
        "in nn.Parameter, with these names and shapes)",
    )
    got_buffers = {n: tuple(b.shape) for n, b in module.named_buffers() if n in buffers}
    expect(
        got_buffers == buffers,
        f"{what} has buffers {got_buffers}; expected {buffers} (register "
        "them with self.register_buffer(name, tensor): then they are saved and move with the model)",
    )


def _load(module: nn.Module, oracle: nn.Module, what: str) -> nn.Module:
    module = module.double()
    try:
        module.load_state_dict(oracle.state_dict(), strict=False)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1].strip()
        raise CheckFailed(f"{what}: the oracle's state_dict does not load into it: {detail}") from None
    return module


def _compare_grads(module: nn.Module, oracle: nn.Module, x: torch.Tensor, what: str, ref: str) -> None:
    g = torch.Generator().manual_seed(99)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out = module(x1)
    expected = oracle(x2)
    expect_tensor(out, expected, f"{what}(x) for x {tuple(x.shape)}", reference=ref)
    dout = torch.randn(expected.shape, generator=g, dtype=torch.float64)
    out.backward(dout)
    expected.backward(dout)
    expect_tensor(x1.grad, x2.grad, f"the gradient of {what}(x) with respect to x", reference=ref)
    mine = dict(module.named_parameters())
    for name, p in oracle.named_parameters():
        expect(mine[name].grad is not None, f"{what}.{name}.grad is None: is it used in forward?")
        expect_tensor(mine[name].grad, p.grad, f"{what}.{name}.grad", reference=ref)


def check_MyLinear(MyLinear) -> None:  # noqa: N802 - the exercise is a class
    torch.manual_seed(0)
    layer = MyLinear(5, 3)
    _expect_names(layer, {"weight": (3, 5), "bias": (3,)}, {}, "MyLinear(5, 3)")
    wide = MyLinear(400, 50).weight.detach()
    bound = 1 / math.sqrt(400)
    expect(
        wide.abs().max() <= bound and wide.std() > bound / 3,
        "MyLinear(400, 50).weight should start "
        f"uniform in [-1/sqrt(in_features), 1/sqrt(in_features)] = +-{bound:.3f}, like nn.Linear's; its "
        f"values lie in [{wide.min():.3f}, {wide.max():.3f}] with std {wide.std():.4f}",
    )
    oracle = nn.Linear(5, 3, dtype=torch.float64)
    layer = _load(layer, oracle, "MyLinear(5, 3)")
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _compare_grads(layer, oracle, x, "MyLinear(5, 3)", "nn.Linear(5, 3)")


def check_MyLayerNorm(MyLayerNorm) -> None:  # noqa: N802
    g = torch.Generator().manual_seed(2)
    for eps in (1e-5, 0.1):  # a large eps shows where it goes: inside the square root
        norm = MyLayerNorm(6, eps=eps)
        what = f"MyLayerNorm(6, eps={eps})"
        _expect_names(norm, {"weight": (6,), "bias": (6,)}, {}, what)
        expect(
            bool((norm.weight == 1).all() and (norm.bias == 0).all()),
            f"{what} should start with weight = 1 and bias = 0, like nn.LayerNorm",
        )
        oracle = nn.LayerNorm(6, eps=eps, dtype=torch.float64)
        with torch.no_grad():  # learned values, so that a swapped weight and bias show
            oracle.weight.copy_(1 + 0.5 * torch.randn(6, generator=g, dtype=torch.float64))
            oracle.bias.copy_(torch.randn(6, generator=g, dtype=torch.float64))
        norm = _load(norm, oracle, what)
        x = 2 + 0.3 * torch.randn(2, 3, 6, generator=g, dtype=torch.float64)  # (B, T, D)
        _compare_grads(norm, oracle, x, what, "nn.LayerNorm")


def check_MyBatchNorm1d(MyBatchNorm1d) -> None:  # noqa: N802
    g = torch.Generator().manual_seed(3)
    norm = MyBatchNorm1d(4, momentum=0.2)
    what = "MyBatchNorm1d(4, momentum=0.2)"
    _expect_names(norm, {}, {"running_mean": (4,), "running_var": (4,)}, what)
    oracle = nn.BatchNorm1d(4, momentum=0.2, affine=False, dtype=torch.float64)
    norm = _load(norm, oracle, what)
    norm.train()
    oracle.train()
    for step in range(3):
        x = 3 + 2 * torch.randn(8, 4, generator=g, dtype=torch.float64)  # (B, F)
        _compare_grads(norm, oracle, x, f"{what} in train mode, batch {step + 1}", "nn.BatchNorm1d")
        for name in ("running_mean", "running_var"):
            mine = getattr(norm, name)
            expect_no_grad(mine, f"{what}.{name}")
            note = " (running_var takes the unbiased batch variance)" if name == "running_var" else ""
            rule = "nn.BatchNorm1d: (1 - momentum) * running + momentum * batch" + note
            expect_tensor(
                mine,
                getattr(oracle, name),
                f"{what}.{name} after {step + 1} training batches",
                reference=rule,
            )
    norm.eval()
    oracle.eval()
    x = 3 + 2 * torch.randn(1, 4, generator=g, dtype=torch.float64)  # one sample: only eval mode can do it
    with torch.no_grad():
        expect_tensor(
            norm(x),
            oracle(x),
            f"{what} in eval mode (after .eval()), on one sample",
            reference="nn.BatchNorm1d: if not self.training, use the running stats",
        )
