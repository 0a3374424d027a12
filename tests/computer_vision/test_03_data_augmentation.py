"""Lesson CV 03 (data augmentation) in quick mode: v2 transforms, MixUp/CutMix, the comparison with and
without augmentation, per-image vs batched speed, and test-time augmentation, as measured.

Quick mode runs on a few hundred CIFAR-10 (JPEG) images when they are found locally, else on
Fashion-MNIST or scikit-learn's digits; the lesson checks its own outcomes against ranges that can
fail. Speeds are printed, never recorded; "augmentation helps" is checked in full mode only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import ROOT, load_definitions, outcome, run_lesson

from dlkit.lesson import outcome_problems

LESSON = "computer_vision/03_data_augmentation.py"


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_lesson(LESSON, tmp_path=tmp_path_factory.mktemp("cv03"))


def test_says_which_data_it_used(result):
    assert len(result["data"]) == 1
    assert set(result["data"]) <= {"cifar10_jpeg", "fashion_mnist", "digits"}


def test_v2_pipeline_draws_new_images_in_range(result):
    assert outcome(result, "pipeline_distinct_draws") >= 7  # 8 draws of the whole pipeline
    assert 1 <= outcome(result, "flip_distinct_draws") <= 2  # a flip gives the image or its mirror
    assert outcome(result, "pipeline_stays_in_0_1") == 1.0


def test_mixup_and_cutmix_labels(result):
    assert outcome(result, "mixup_label_sum_error") < 1e-6  # soft labels are probabilities
    assert outcome(result, "cutmix_label_sum_error") < 1e-6
    assert outcome(result, "cutmix_label_minus_pixel_share") < 1e-6  # label weight = share of own pixels


def test_quick_records_only_claims_it_can_show(result):
    assert {"acc_no_aug", "acc_aug"} <= set(result["outcomes"])
    quick_only_prints = {"aug_minus_no_aug", "gap_no_aug", "gap_reduction", "acc_tta", "tta_minus_plain"}
    assert not quick_only_prints & set(result["outcomes"])
    assert not any("per_s" in name or "speedup" in name for name in result["outcomes"])
    assert "images/s" in result["stdout"] and "with flip TTA" in result["stdout"]
    flip_p = 0.0 if "digits" in result["data"] else 0.5  # digits are not mirrored: that changes them
    assert flip_p - 0.1 < outcome(result, "flipped_share") < flip_p + 0.1
    assert all(o["passed"] for o in result["outcomes"].values()) and outcome_problems(result) == []


def test_figures(result):
    names = {Path(f).name for f in result["figures"]}
    assert {"one_image_many_draws.png", "mixup_cutmix.png", "per_sample_vs_batched.png"} <= names
    assert "accuracy_with_and_without_augmentation.png" in names
    assert all(Path(f).stat().st_size > 1000 for f in result["figures"])


def test_batched_augmentation_matches_v2_on_fixed_draws():
    """dlkit.augment's shift equals v2's reflect-padded crop at the same offset; its flip is v2's flip."""
    from torchvision.transforms.v2 import functional as TF

    from dlkit.augment import flip_lr, translate

    X = torch.rand(4, 3, 10, 12)  # (B, C, H, W)
    pad = 2
    shifts = torch.tensor([[-2, 0], [1, -1], [0, 2], [2, 2]])  # (dy, dx)
    shifted = translate(X, shifts, pad)
    for i, (dy, dx) in enumerate(shifts.tolist()):
        padded = TF.pad(X[i], [pad], padding_mode="reflect")
        assert torch.equal(shifted[i], TF.crop(padded, pad + dy, pad + dx, 10, 12))
    assert torch.equal(flip_lr(X, p=1.0), TF.horizontal_flip(X))
    assert torch.equal(flip_lr(X, p=0.0), X)


def test_transformed_dataset_applies_the_transform_on_each_read():
    lesson = load_definitions(ROOT / LESSON)
    from torchvision.transforms import v2

    from dlkit.data import ImageData

    data = ImageData(torch.rand(3, 1, 4, 5), torch.tensor([2, 0, 1]), ["a", "b", "c"], "random")
    image, label = lesson.Transformed(data, v2.RandomHorizontalFlip(p=1.0))[1]
    assert torch.equal(image, data.x[1].flip(-1)) and label == 0
    crop = lesson.Transformed(data, v2.RandomCrop((4, 5), padding=1))
    assert len(crop) == 3 and crop[0][0].shape == (1, 4, 5)
