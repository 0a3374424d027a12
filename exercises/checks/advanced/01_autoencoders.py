"""Checks for advanced/01 (autoencoders): statistics of the noise, and a reference training step and score
written here, on a small autoencoder in float64."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.exercises import expect, expect_close, expect_no_grad, expect_tensor


def check_masking_noise(masking_noise) -> None:
    torch.manual_seed(0)
    x = torch.rand(400, 1, 8, 8, dtype=torch.float64) * 0.9 + 0.1  # no pixel is 0 to begin with
    original = x.clone()
    for p in (0.3, 0.7):
        out = masking_noise(x, p)
        expect(
            isinstance(out, torch.Tensor) and out.shape == x.shape,
            f"masking_noise should return a tensor shaped like x {tuple(x.shape)}",
        )
        expect(
            torch.equal(x, original),
            "masking_noise changed its input in place: build a new tensor "
            "(x * mask), the clean image is the training target",
        )
        dropped = (out == 0).double().mean().item()
        expect(
            abs(dropped - p) < 0.02,
            f"with p={p}, {dropped:.1%} of the pixels are 0; expected about "
            f"{p:.0%} (each pixel dropped with probability p)",
        )
        kept = out != 0
        expect(
            torch.allclose(out[kept], x[kept]),
            "the kept pixels changed: masking noise sets pixels to 0 and "
            "leaves the others as they are (no rescaling by 1 / (1 - p), unlike dropout)",
        )
    expect(
        not torch.equal(masking_noise(x, 0.5), masking_noise(x, 0.5)),
        "two calls gave the same mask: draw a fresh random mask each call",
    )


def _autoencoder(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(16, 6),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(6, 16),
        nn.Unflatten(1, (1, 4, 4)),
    ).double()


def check_denoising_step(denoising_step) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.rand(10, 1, 4, 4, generator=g, dtype=torch.float64)
    mask = torch.rand(10, 1, 4, 4, generator=g, dtype=torch.float64) > 0.5
    corrupt = lambda batch: batch * mask  # noqa: E731  (a fixed corruption, so both runs see the same)
    model, reference = _autoencoder(), _autoencoder()
    for p in model.parameters():  # gradients left from an earlier step: zero_grad must clear them
        p.grad = torch.ones_like(p)
    loss = denoising_step(model, torch.optim.SGD(model.parameters(), lr=0.5), x, corrupt)
    ref_loss = F.mse_loss(reference(corrupt(x)), x)
    ref_loss.backward()
    with torch.no_grad():
        for p in reference.parameters():
            p -= 0.5 * p.grad
    with torch.no_grad():
        to_noisy = F.mse_loss(_autoencoder()(corrupt(x)), corrupt(x)).item()
        from_clean = F.mse_loss(_autoencoder()(x), x).item()
    expect(
        abs(float(loss) - to_noisy) > 1e-9,
        "your target is the corrupted image: a denoiser learns to "
        "rebuild the clean x from corrupt(x), so the loss is mse(model(corrupt(x)), x)",
    )
    expect(abs(float(loss) - from_clean) > 1e-9, "the model saw the clean image: feed it corrupt(x)")
    expect_close(loss, ref_loss.item(), "the returned loss, mse(model(corrupt(x)), x)", rtol=1e-6)
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        expect_tensor(
            p.detach(),
            q.detach(),
            f"the model's {name} after the step",
            reference="one SGD step; did you call optimizer.zero_grad() before backward()?",
        )


def check_reconstruction_scores(reconstruction_scores) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(12, 1, 4, 4, generator=g, dtype=torch.float64)
    model = _autoencoder(dropout=0.5).train()  # as a training loop leaves it
    scores = reconstruction_scores(model, x)
    with torch.no_grad():
        expected = (_autoencoder(0.5).eval()(x) - x).flatten(1).pow(2).mean(1)
    expect_no_grad(scores, "the score tensor")
    expect_tensor(
        scores,
        expected,
        "reconstruction_scores(model, x)",
        reference="the mean squared error of each image, with model.eval() (dropout off)",
    )
