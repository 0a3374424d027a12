"""Checks for advanced/03 (GANs): `F.binary_cross_entropy_with_logits`, autograd and a reference step written
here are the oracles, on small networks in float64."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.exercises import expect, expect_close, expect_tensor


def check_generator_loss(generator_loss) -> None:
    g = torch.Generator().manual_seed(0)
    d = (torch.randn(32, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    expected = F.binary_cross_entropy_with_logits(d.detach(), torch.ones(32, dtype=torch.float64))
    got = generator_loss(d)
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        saturating = (
            "that is the saturating loss, mean log(1 - D(G(z))): its gradient vanishes while D rejects "
        )
        expect(
            not torch.isclose(got.detach(), -F.softplus(d.detach()).mean()),
            saturating + "G's images; use -log D(G(z)) = -log sigmoid(d_fake), averaged over the batch",
        )
    expect_tensor(
        got, expected, "generator_loss(d_fake)", reference="F.binary_cross_entropy_with_logits, target 1"
    )
    expect(
        got.requires_grad,
        "the loss carries no gradient: G could not learn from it (no .detach(), no .item())",
    )
    got.backward()
    expect_tensor(
        d.grad,
        -torch.sigmoid(-d.detach()) / 32,
        "the gradient with respect to d_fake",
        reference="autograd of the non-saturating loss",
    )
    rejected = torch.tensor([-200.0, -150.0, 3.0])  # float32 logits: D rejects two images with certainty
    expect_tensor(
        generator_loss(rejected),
        F.binary_cross_entropy_with_logits(rejected, torch.ones(3)),
        "generator_loss for float32 logits of -200 and -150",
        reference="softplus(-d): log(sigmoid(-200)) is log(0) = -inf in float32",
    )


def _players() -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(3, 5), nn.Tanh()).double()
    D = nn.Sequential(nn.Linear(5, 4), nn.LeakyReLU(0.2), nn.Linear(4, 1), nn.Flatten(0)).double()
    g = torch.Generator().manual_seed(1)
    return G, D, torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randn(8, 3, generator=g).double()


def check_discriminator_step(discriminator_step) -> None:
    G, D, real, z = _players()
    ref_D, g_before = copy.deepcopy(D), [p.detach().clone() for p in G.parameters()]
    for p in D.parameters():  # gradients left over from the generator's step: zero_grad must clear them
        p.grad = torch.ones_like(p)
    opt_d = torch.optim.SGD(D.parameters(), lr=0.1)
    loss = discriminator_step(G, D, opt_d, real, z, 0.9)
    with torch.no_grad():
        fake = G(z)
    d_real, d_fake = ref_D(real), ref_D(fake)
    ref_loss = F.binary_cross_entropy_with_logits(
        d_real, torch.full_like(d_real, 0.9)
    ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    ref_loss.backward()
    with torch.no_grad():
        for p in ref_D.parameters():
            p -= 0.1 * p.grad
    for p in G.parameters():
        expect(
            p.grad is None or not p.grad.any(),
            "G's parameters received gradients from the discriminator's step: use G(z).detach() (or "
            "torch.no_grad()) for the fake batch, so that D's loss stops at G's output",
        )
    for before, p in zip(g_before, G.parameters(), strict=True):
        expect(torch.equal(before, p.detach()), "G's weights changed: only opt_d may step here")
    expect_close(loss, ref_loss.item(), "the returned loss (real targets = smooth, fake = 0)", rtol=1e-6)
    for (name, p), q in zip(D.named_parameters(), ref_D.parameters(), strict=True):
        expect_tensor(
            p.detach(),
            q.detach(),
            f"D's {name} after the step",
            reference="one SGD step on BCE(D(real), smooth) + BCE(D(fake), 0); "
            "did you call opt_d.zero_grad() before backward()?",
        )


def check_gradient_penalty(gradient_penalty) -> None:
    torch.manual_seed(2)
    D = nn.Sequential(nn.Flatten(), nn.Linear(9, 6), nn.Tanh(), nn.Linear(6, 1), nn.Flatten(0)).double()
    g = torch.Generator().manual_seed(3)
    real, fake = (torch.randn(5, 1, 3, 3, generator=g, dtype=torch.float64) for _ in range(2))
    alpha = torch.rand(5, 1, 1, 1, generator=g, dtype=torch.float64)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    expected = (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
    expected.backward()
    ref_grads = [
        torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in D.parameters()
    ]  # last bias: 0
    D.zero_grad(set_to_none=True)
    got = gradient_penalty(D, real, fake, alpha)
    expect_tensor(
        got,
        expected.detach(),
        "gradient_penalty(D, real, fake, alpha)",
        reference="mean over images of (||grad of D at x_hat||_2 - 1)^2, each image's gradient flattened",
    )
    expect(
        got.requires_grad,
        "the penalty carries no gradient, so D cannot learn from it: pass "
        "create_graph=True to torch.autograd.grad",
    )
    D.zero_grad(set_to_none=True)
    got.backward()
    for (name, p), ref in zip(D.named_parameters(), ref_grads, strict=True):
        grad = torch.zeros_like(p) if p.grad is None else p.grad
        expect_tensor(grad, ref, f"the penalty's gradient for D's {name}", reference="autograd")
