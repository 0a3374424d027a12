"""Advanced 01 (autoencoders) in quick mode, and its hand-written pieces against scipy, scikit-learn and
torchvision: the blur, the median filter, PSNR and the PCA reconstruction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, load_definitions, outcome, run_lesson
from scipy import ndimage
from sklearn.decomposition import PCA

from dlkit.lesson import outcome_problems

LESSON = "advanced/01_autoencoders.py"


@pytest.fixture(scope="module")
def lesson():
    return load_definitions(ROOT / LESSON)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_lesson(LESSON, tmp_path=tmp_path_factory.mktemp("adv01"))


def test_quick_run_passes_with_ranges_that_can_fail(result):
    assert result["quick"] and result["finished"]
    assert all(o["passed"] for o in result["outcomes"].values()), result["outcomes"]
    assert outcome_problems(result) == []
    assert {Path(f).name for f in result["figures"]} == {
        "reconstructions.png",
        "bottleneck.png",
        "denoising.png",
    }


def test_denoising_and_codes(result):
    assert outcome(result, "dae_gain_db_masking") > 0.5  # the DAE beats input and best filter
    assert outcome(result, "code2_knn_acc") > 0.3  # two numbers per image keep some of the class
    assert "PSNR (dB)" in result["stdout"] and "IsolationForest" in result["stdout"]
    full_only = {"mlp_vs_pca_mse_ratio", "conv_vs_mlp_mse_ratio", "sweep_smallest_vs_largest_mse_ratio"}
    assert not full_only & set(result["outcomes"])  # quick mode trains too little to claim them


def test_anomaly_detection_beats_chance(result):
    auc = [v["value"] for k, v in result["outcomes"].items() if k.startswith("ae_roc_auc_")]
    assert auc and min(auc) > 0.6
    assert outcome(result, "one_class_ae_roc_auc") > 0.65


def test_autoencoders_take_either_image_size(lesson):
    for side in (8, 28):
        x = torch.rand(5, 1, side, side)
        for model in (lesson.MLPAutoencoder(side * side, 3), lesson.ConvAutoencoder(side, 3)):
            y = model(x)
            assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
            assert model.encoder(x).shape == (5, 3)
    tabular = lesson.MLPAutoencoder(6, 2, hidden=8, sigmoid=False)
    assert tabular(torch.randn(4, 6)).shape == (4, 6)


@pytest.mark.parametrize("sigma", [0.5, 1.2])
def test_gaussian_blur_matches_torchvision(lesson, sigma):
    from torchvision.transforms.v2 import functional as TF

    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    size = 2 * int(np.ceil(3 * sigma)) + 1
    expected = TF.gaussian_blur(x, [size, size], [sigma, sigma])  # reflect padding, the same kernel
    assert torch.allclose(lesson.gaussian_blur(x, sigma), expected, atol=1e-6)


@pytest.mark.parametrize("size", [3, 5])
def test_median_filter_matches_scipy(lesson, size):
    x = torch.rand(2, 1, 10, 10, dtype=torch.float64)
    expected = ndimage.median_filter(x.numpy(), size=(1, 1, size, size), mode="mirror")  # torch's "reflect"
    np.testing.assert_array_equal(lesson.median_filter(x, size).numpy(), expected)


def test_psnr(lesson):
    x = torch.zeros(4, 1, 8, 8)
    assert lesson.psnr(x + 0.1, x) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01 -> 10 log10(100)
    assert lesson.psnr(x + 0.01, x) == pytest.approx(40.0, abs=1e-3)


def test_pca_errors_match_scikit_learn(lesson):
    g = torch.Generator().manual_seed(0)
    x_train = torch.rand(200, 1, 5, 5, generator=g, dtype=torch.float64) @ torch.rand(
        5, 5, generator=g, dtype=torch.float64
    )
    x = torch.rand(50, 1, 5, 5, generator=g, dtype=torch.float64)
    basis = torch.linalg.svd(x_train.flatten(1) - x_train.flatten(1).mean(0), full_matrices=False).Vh
    pca = PCA(4).fit(x_train.flatten(1).numpy())
    rebuilt = pca.inverse_transform(pca.transform(x.flatten(1).numpy()))
    expected = ((rebuilt - x.flatten(1).numpy()) ** 2).mean(1)
    np.testing.assert_allclose(lesson.pca_errors(x_train, x, 4, basis).numpy(), expected, rtol=1e-9)


@pytest.mark.slow
def test_quick_mode_offline_uses_digits(tmp_path):
    """Without any dataset: digits for the images, digits one-vs-rest for the anomaly part."""
    data = run_lesson(LESSON, "--quick", tmp_path=tmp_path, no_data=True)
    assert "load_digits" in data["data"]["images"] and "scikit-learn digits" in data["stdout"]
    assert "digits_one_vs_rest" in data["stdout"]
    assert all(o["passed"] for o in data["outcomes"].values()), data["outcomes"]
