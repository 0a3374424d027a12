"""Lesson 05 (Faster R-CNN): anchors, box coding and RoIAlign by hand against torchvision, and a quick run.

Quick mode trains the detector for a few steps on eight scenes, from random weights (it never downloads
COCO's): its loss must fall, which the lesson checks against a range that can fail; its mAP is printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import ROOT, load_definitions, outcome, run_lesson
from torchvision import ops
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from dlkit.lesson import outcome_problems

LESSON = "computer_vision/05_faster_rcnn.py"


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("cv05")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(tmp / "torch"))  # an empty hub cache: from scratch, on every machine
        return run_lesson(LESSON, tmp_path=tmp)


@pytest.fixture(scope="module")
def lesson():
    module = load_definitions(ROOT / LESSON)
    return module


def test_by_hand_equals_torchvision_in_the_run(result):
    assert outcome(result, "anchors_max_abs_diff") == 0.0
    for name in (
        "encode_max_abs_diff",
        "decode_max_abs_diff",
        "round_trip_max_abs_diff",
        "roi_align_max_abs_diff",
    ):
        assert outcome(result, name) < 1e-9


def test_trains_from_scratch_offline_and_its_loss_falls(result):
    assert "from scratch (no COCO weights)" in result["data"]["faster_rcnn"]
    assert "rcnn_map50" not in result["outcomes"]  # quick mode prints the mAP; full mode checks it
    assert "Faster R-CNN: mAP@0.5" in result["stdout"]
    assert all(o["passed"] for o in result["outcomes"].values()) and outcome_problems(result) == []
    assert {"loss.png", "detections.png"} <= {Path(f).name for f in result["figures"]}


@pytest.mark.parametrize(
    "sizes, ratios, grid, stride", [([16.0], [1.0], (3, 4), 8), ([24.0, 48.0, 96.0], [0.5, 2.0], (6, 2), 32)]
)
def test_anchors_by_hand(lesson, sizes, ratios, grid, stride):
    images = ImageList(
        torch.zeros(1, 3, grid[0] * stride, grid[1] * stride), [(grid[0] * stride, grid[1] * stride)]
    )
    theirs = AnchorGenerator((tuple(sizes),), (tuple(ratios),))(images, [torch.zeros(1, 1, *grid)])[0]
    assert torch.equal(lesson.anchors_by_hand(sizes, ratios, grid, stride), theirs)


def test_box_coding_by_hand(lesson):
    g = torch.Generator().manual_seed(1)
    refs = ops.box_convert(torch.rand(40, 4, generator=g, dtype=torch.float64) * 50 + 5, "cxcywh", "xyxy")
    boxes = refs + torch.randn(40, 4, generator=g, dtype=torch.float64)
    for weights in ((10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0)):
        coder = BoxCoder(weights)
        torch.testing.assert_close(
            lesson.encode_by_hand(boxes, refs, weights), coder.encode_single(boxes, refs)
        )
        codes = lesson.encode_by_hand(boxes, refs, weights)
        torch.testing.assert_close(lesson.decode_by_hand(codes, refs, weights), boxes)


@pytest.mark.parametrize("sampling_ratio, scale", [(1, 1.0), (2, 0.25), (3, 0.125)])
def test_roi_align_by_hand(lesson, sampling_ratio, scale):
    g = torch.Generator().manual_seed(sampling_ratio)
    features = torch.randn(3, 9, 11, generator=g, dtype=torch.float64)  # (C, H, W)
    size = torch.tensor([11.0, 9.0]) / scale  # the image the map was computed from
    corner = torch.rand(6, 2, generator=g, dtype=torch.float64) * size - 4  # some hang over the border
    rois = torch.cat([corner, corner + 1 + torch.rand(6, 2, generator=g, dtype=torch.float64) * size / 2], 1)
    ours = lesson.roi_align_by_hand(features, rois, 5, scale, sampling_ratio)
    theirs = ops.roi_align(
        features[None], [rois], 5, spatial_scale=scale, sampling_ratio=sampling_ratio, aligned=True
    )
    torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=0)
