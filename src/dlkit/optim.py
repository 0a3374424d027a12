"""Muon (Keller Jordan, 2024): momentum whose update for each weight matrix is orthogonalised by a few
Newton-Schulz steps, so that every direction of the matrix moves by about the same amount. It is for
the hidden matrices of a network; embeddings, the output layer, norms and biases keep AdamW.

    groups = muon_param_groups(model, lr=3e-3, muon_lr=0.02, weight_decay=0.1)
    optimizer = MuonAdamW(groups)      # one optimizer: one step(), one state_dict() for checkpoints

The Muon update equals ``torch.optim.Muon`` (PyTorch >= 2.9; tests compare them) with Keller Jordan's
learning-rate scaling; the AdamW update equals ``torch.optim.AdamW``. Newton-Schulz runs in bf16 where
the hardware runs bf16 natively (GPUs, CPUs with AVX512-BF16 or AMX) and in float32 elsewhere: on a CPU
with only AVX2 a bf16 ``bmm`` took 34 ms against 1 ms in float32 (``dlkit.device.fast_dtype``). This
file exists so that the course runs on PyTorch 2.6-2.8 too and so that the algorithm can be read in
one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from dlkit.device import fast_dtype

__all__ = ["MuonAdamW", "muon_param_groups", "newton_schulz"]

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # the quintic of Keller Jordan's Muon (and torch.optim.Muon)


def newton_schulz(
    g: torch.Tensor, steps: int = 5, eps: float = 1e-7, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """About U V^T for g = U S V^T: a quintic Newton-Schulz iteration that pushes every singular value
    of g towards 1 (to roughly 0.7-1.2, which trains as well as exactly 1, and is far cheaper than an
    SVD). ``g`` is a matrix or a stack of matrices (n, rows, cols), each orthogonalised alone. It runs
    in ``dtype``: by default bf16 where that is fast, else float32 (:func:`dlkit.device.fast_dtype`)."""
    if g.ndim not in (2, 3):
        raise ValueError(
            f"newton_schulz takes a matrix or a stack of them, not a tensor of shape {tuple(g.shape)}"
        )
    addmm = torch.addmm if g.ndim == 2 else torch.baddbmm  # beta * input + alpha * (m1 @ m2)
    a, b, c = NS_COEFFICIENTS
    x = g.to(dtype or fast_dtype(g.device))
    tall = g.size(-2) > g.size(-1)
    if tall:
        x = x.mT  # iterate on the wide side: x @ x.T is the smaller Gram matrix
    # spectral norm <= Frobenius norm = 1: inside the iteration's range
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = addmm(x, addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)  # a x + (b A + c A^2) x
    return x.mT if tall else x


def muon_param_groups(
    model: nn.Module,
    *,
    lr: float,
    muon_lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.99),
    exclude: Iterable[nn.Module] = (),
) -> list[dict[str, Any]]:
    """Muon for the weights of the model's ``nn.Linear`` layers, except a layer that shares its weight
    with an ``nn.Embedding`` (a tied output layer) and the modules in ``exclude`` (an untied output
    layer should go there: Muon is for hidden layers); AdamW with ``weight_decay`` for the other
    matrices and without it for vectors (norms, biases), as nanoGPT."""
    skipped = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    skipped |= {id(p) for m in exclude for p in m.parameters()}
    hidden, seen = [], set()
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, nn.Linear) and id(weight) not in skipped and id(weight) not in seen:
            hidden.append(weight)
            seen.add(id(weight))
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
    return [
        {"params": hidden, "use_muon": True, "lr": muon_lr, "weight_decay": weight_decay},
        {"params": [p for p in rest if p.dim() >= 2], "lr": lr, "weight_decay": weight_decay, "betas": betas},
        {"params": [p for p in rest if p.dim() < 2], "lr": lr, "weight_decay": 0.0, "betas": betas},
    ]


class MuonAdamW(torch.optim.Optimizer):
    """Muon for the param groups with ``use_muon=True`` (2-D only), AdamW for the others.

    Muon: ``buf = m buf + (1 - m) g``; the update is ``NS((1 - m) g + m buf)`` (Nesterov), scaled by
    ``sqrt(max(1, rows / cols))``; decoupled weight decay ``p -= lr * wd * p``.
    """

    def __init__(
        self,
        params: Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        ns_dtype: str | None = None,
    ) -> None:
        if ns_dtype not in (None, "bfloat16", "float32"):
            raise ValueError(
                f"ns_dtype must be None (the fast one), 'bfloat16' or 'float32', not {ns_dtype!r}"
            )
        defaults = {
            "lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "momentum": momentum,
            "nesterov": nesterov, "ns_steps": ns_steps, "ns_dtype": ns_dtype, "use_muon": False,
        }  # fmt: skip
        super().__init__(params, defaults)
        for group in self.param_groups:
            bad = [tuple(p.shape) for p in group["params"] if group["use_muon"] and p.ndim != 2]
            if bad:
                raise ValueError(f"Muon takes 2-D weights only; this group has shapes {bad}")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            (self._muon if group["use_muon"] else self._adamw)(group, params)
        return loss

    def _muon(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        lr, m = group["lr"], group["momentum"]
        by_shape: dict[torch.Size, list[torch.Tensor]] = {}
        for p in params:
            by_shape.setdefault(p.shape, []).append(p)
        for (rows, cols), same in by_shape.items():  # one batched iteration per shape: fewer, larger ops
            updates = []
            for p in same:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf, grad = state["momentum_buffer"], p.grad
                assert grad is not None  # step() passes only parameters with a gradient
                buf.lerp_(grad, 1 - m)
                updates.append(grad.lerp(buf, m) if group["nesterov"] else buf)
            dtype = getattr(torch, group["ns_dtype"]) if group.get("ns_dtype") else None
            orthogonal = newton_schulz(torch.stack(updates), group["ns_steps"], dtype=dtype)
            scale = -lr * math.sqrt(max(1.0, rows / cols))
            for p, update in zip(same, orthogonal, strict=True):
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(update.to(p.dtype), alpha=scale)

    def _adamw(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        for p in params:
            state = self.state[p]
            if "step" not in state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            step = state["step"].item()
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            p.mul_(1 - lr * group["weight_decay"])
            exp_avg.lerp_(p.grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
            p.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**step))
