"""Advanced 03 (GANs) in quick mode, and its networks: shapes for both image sizes, the conditional
inputs, spectral normalisation, and one training step of each player."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT, load_definitions, outcome, run_lesson

from dlkit.generative import embed, gaussian_stats, make_feature_net
from dlkit.lesson import outcome_problems

LESSON = "advanced/03_gans.py"


@pytest.fixture(scope="module")
def lesson():
    return load_definitions(ROOT / LESSON)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_lesson(LESSON, tmp_path=tmp_path_factory.mktemp("adv03"))


def test_quick_run_passes_with_ranges_that_can_fail(result):
    assert result["quick"] and result["finished"]
    assert all(o["passed"] for o in result["outcomes"].values()), result["outcomes"]
    assert outcome_problems(result) == []
    assert {"d_loss.png", "dcgan_samples.png", "cgan_samples.png", "dcgan_vs_vae.png", "checkpoints.png"} <= {
        Path(f).name for f in result["figures"]
    }


def test_a_discriminator_that_learns_too_fast_wins(result):
    assert outcome(result, "broken_d_loss") < 0.05


def test_the_distances_lie_between_floor_and_ceiling(result):
    assert outcome(result, "floor_vs_noise_fd_ratio") < 0.05
    assert "lesson 02 has not run" in result["stdout"]  # a fresh runs folder: the VAE is trained here
    for row in ("floor: train images", "ceiling: uniform noise", "DCGAN", "conditional GAN"):
        assert row in result["stdout"]


@pytest.mark.parametrize("side", [8, 28])
def test_networks_take_either_image_size_and_labels(lesson, side):
    G, D = lesson.Generator(side, 16, 4), lesson.Discriminator(side, 4)
    images = G(torch.randn(5, 16))
    assert images.shape == (5, 1, side, side) and images.abs().max() <= 1  # tanh
    assert D(images).shape == (5,)
    labels = torch.tensor([0, 1, 2, 1, 0])
    Gc, Dc = lesson.Generator(side, 16, 4, num_classes=3), lesson.Discriminator(side, 4, num_classes=3)
    images = Gc(torch.randn(5, 16), labels)
    assert images.shape == (5, 1, side, side) and Dc(images, labels).shape == (5,)
    z = torch.randn(1, 16).expand(2, 16)
    Gc.eval()
    a, b = Gc(z, torch.tensor([0, 1]))
    assert not torch.allclose(a, b)  # the same noise, another class: another image


def test_spectral_norm_bounds_the_discriminators_layers(lesson):
    D = lesson.Discriminator(28, 4, spectral=True)
    for _ in range(30):  # each forward pass runs one power iteration
        D(torch.rand(8, 1, 28, 28))
    weight = D.out.weight  # the normalised weight
    assert torch.linalg.matrix_norm(weight.detach(), ord=2) == pytest.approx(1.0, rel=0.05)


def test_one_training_step_moves_both_players(lesson):
    torch.manual_seed(0)
    setup = SimpleNamespace(batch_size=8, z_dim=16, width=4)
    lesson.__dict__.update(cfg=setup, device=torch.device("cpu"), amp_dtype=None,
                           x_real=torch.rand(32, 1, 8, 8) * 2 - 1, y_real=torch.arange(32) % 3)  # fmt: skip
    gan = lesson.GAN(lesson.Generator(8, 16, 4, 3), lesson.Discriminator(8, 4, 3), 1e-3, 1e-3, smooth=0.9)
    before = [p.detach().clone() for p in (*gan.G.parameters(), *gan.D.parameters())]
    lesson.train_gan(gan, steps=3, conditional=True)
    after = [p.detach() for p in (*gan.G.parameters(), *gan.D.parameters())]
    assert gan.steps == 3 and len(gan.d_losses) == 3
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True) if a.numel() > 1)
    samples = lesson.sample(gan.G, 10, torch.arange(10) % 3)
    assert samples.shape == (10, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1


@pytest.mark.slow
def test_quick_mode_offline_and_without_native_bf16(tmp_path, monkeypatch):
    monkeypatch.setenv("DLKIT_CPU_BF16", "0")
    data = run_lesson(LESSON, "--quick", tmp_path=tmp_path, no_data=True)
    assert "load_digits" in data["data"]["images"] and "no native bf16" in data["device"]
    assert all(o["passed"] for o in data["outcomes"].values()), data["outcomes"]


def test_the_generator_kept_is_the_checkpoint_closest_to_the_held_out_images(lesson, monkeypatch):
    torch.manual_seed(0)
    net = make_feature_net(3)  # untrained: any fixed feature map will do
    setup = SimpleNamespace(batch_size=8, z_dim=16, width=4, eval_every=2, num_samples=64)
    lesson.__dict__.update(cfg=setup, device=torch.device("cpu"), amp_dtype=None, net=net, num_classes=3,
                           x_real=torch.rand(32, 1, 8, 8) * 2 - 1, y_real=torch.arange(32) % 3,
                           val_stats=gaussian_stats(embed(net, torch.rand(64, 1, 8, 8))[0]))  # fmt: skip
    states, train_gan = [], lesson.train_gan

    def spy(gan, **kwargs):  # the generator's weights at each checkpoint; from the third on, spoilt
        train_gan(gan, **kwargs)
        if len(states) >= 2:
            with torch.no_grad():
                gan.G.net[-2].weight.zero_()  # the last layer: every image the same, far from the data
        states.append(copy.deepcopy(gan.G.state_dict()))
        return gan

    monkeypatch.setattr(lesson, "train_gan", spy)
    gan = lesson.GAN(lesson.Generator(8, 16, 4, 3), lesson.Discriminator(8, 4, 3), 1e-2, 1e-2, smooth=0.9)
    fd, step = lesson.train_and_pick(gan, steps=9, conditional=True)
    assert gan.steps == 9 and len(gan.val_fd) == len(states) == 5  # checkpoints after 2, 4, 6, 8, 9 steps
    best = min(range(5), key=gan.val_fd.__getitem__)
    assert fd == gan.val_fd[best] and step == [2, 4, 6, 8, 9][best]
    kept = gan.G.state_dict()
    assert all(torch.equal(kept[k], states[best][k]) for k in kept)
    assert best < 4  # not the last: G went back to an earlier checkpoint
