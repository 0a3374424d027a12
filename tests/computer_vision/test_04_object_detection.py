"""Lesson 04 (object detection): the quick run's outcomes, and the hand-written box code against PyTorch.

The lesson runs once in quick mode (Fashion-MNIST scenes when it is found locally, else digits, on a
smaller canvas): the YOLO-style detector must learn something measurable there, which the lesson checks
against ranges that can fail. Its IoU, NMS and AP functions are then loaded without running it and
checked against torchvision.ops and torchmetrics (pycocotools) on random boxes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import ROOT, load_definitions, outcome, run_lesson
from torchmetrics.detection import MeanAveragePrecision
from torchvision import ops

from dlkit.data import detection_classes, detection_scenes, load_dataset
from dlkit.lesson import outcome_problems

LESSON = "computer_vision/04_object_detection.py"


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_lesson(LESSON, tmp_path=tmp_path_factory.mktemp("cv04"))


@pytest.fixture(scope="module")
def lesson():
    return load_definitions(ROOT / LESSON)


# --- the quick run ---------------------------------------------------------------------------------


def test_says_which_data_it_used(result):
    assert list(result["data"]) in (["fashion_mnist"], ["digits"])


def test_box_code_matches_torchvision(result):
    assert outcome(result, "cxcywh_max_diff") < 1e-4
    assert outcome(result, "iou_max_diff") < 1e-5
    assert outcome(result, "nms_equal") == 1
    assert outcome(result, "batched_nms_equal") == 1


def test_average_precision_matches_torchmetrics(result):
    # on the YOLO-style detector's held-out predictions
    assert outcome(result, "map50_101_point_diff") < 1e-6  # COCO's 101 recall levels: the same number
    assert outcome(result, "map50_all_point_diff") < 0.02  # VOC's exact area: close, not equal


def test_the_detector_learns_and_every_range_can_fail(result):
    assert outcome(result, "yolo_map") <= outcome(result, "yolo_map50")  # stricter IoUs only lower AP
    assert outcome(result, "yolo_map50") <= outcome(result, "yolo_map50_class_agnostic")  # naming is harder
    assert all(
        o["chance"] == 0.0 for name, o in result["outcomes"].items() if "map" in name and "diff" not in name
    )
    assert not any("seconds" in name or "rcnn" in name for name in result["outcomes"])  # lesson 05 has R-CNN
    assert all(o["passed"] for o in result["outcomes"].values()) and outcome_problems(result) == []


def test_figures(result):
    assert {"detections.png", "yolo_loss.png"} <= {Path(f).name for f in result["figures"]}


def test_detection_scenes_have_exact_boxes():
    items = load_dataset("digits", "test")
    X, targets = detection_scenes(items, 20, seed=3, canvas=64, objects=(2, 3), sizes=(12, 20))
    assert X.shape == (20, 1, 64, 64) and X.min() >= 0 and X.max() <= 1
    for scene, t in zip(X, targets, strict=True):
        assert 2 <= len(t["boxes"]) <= 3 and t["labels"].max() < 10
        inside = torch.zeros(64, 64, dtype=torch.bool)
        for x1, y1, x2, y2 in t["boxes"].int().tolist():
            assert 12 <= max(x2 - x1, y2 - y1) <= 20  # the longer side, as asked
            inside[y1:y2, x1:x2] = True
        assert scene[0][~inside].max() == 0  # nothing is drawn outside the boxes
    assert ops.box_iou(targets[0]["boxes"], targets[0]["boxes"]).fill_diagonal_(0).max() == 0  # no overlap
    with pytest.raises(ValueError, match="do not fit"):
        detection_scenes(items, 1, seed=0, canvas=32, objects=(4, 4), sizes=(30, 30))
    assert detection_classes(load_dataset("digits", "test"))[0] == items.classes


# --- the hand-written functions against torchvision and torchmetrics --------------------------------


def boxes(n: int, seed: int, size: float = 100.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    corner = torch.rand(n, 2, generator=g) * size
    return torch.cat([corner, corner + 0.5 + torch.rand(n, 2, generator=g) * size / 3], dim=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_iou_and_box_formats(lesson, seed):
    a, b = boxes(50, seed), boxes(70, seed + 100)
    b[:5] = a[:5]  # some identical pairs (IoU 1); disjoint pairs come by themselves (IoU 0)
    torch.testing.assert_close(lesson.iou_matrix(a, b), ops.box_iou(a, b))
    torch.testing.assert_close(lesson.xyxy_to_cxcywh(a), ops.box_convert(a, "xyxy", "cxcywh"))
    torch.testing.assert_close(lesson.cxcywh_to_xyxy(lesson.xyxy_to_cxcywh(a)), a)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_and_batched_nms(lesson, threshold):
    b, g = boxes(300, seed=7, size=50.0), torch.Generator().manual_seed(8)
    scores, labels = torch.rand(300, generator=g), torch.randint(0, 4, (300,), generator=g)
    assert torch.equal(lesson.nms(b, scores, threshold), ops.nms(b, scores, threshold))
    expected = ops.batched_nms(b, scores, labels, threshold)
    assert torch.equal(lesson.batched_nms(b, scores, labels, threshold), expected)
    assert (
        lesson.batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).numel()
        == 0
    )


def test_average_precision_by_hand(lesson):
    # ranked: TP (p 1, r 0.5), FP (p 0.5), TP (p 2/3, r 1); the envelope is 1, 2/3, 2/3
    is_tp, scores = torch.tensor([True, False, True]), torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64)
    assert lesson.average_precision(is_tp, scores, num_gt=2) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # COCO: levels 0..0.5 (51 of them) see precision 1, levels 0.51..1 (50) see 2/3
    coco = lesson.average_precision(is_tp, scores, 2, lesson.COCO_LEVELS)
    assert coco == pytest.approx((51 * 1 + 50 * 2 / 3) / 101)
    assert lesson.average_precision(torch.zeros(0, dtype=torch.bool), torch.zeros(0), 3) == 0.0


def random_detections(seed: int, num_images: int = 40, num_classes: int = 3) -> tuple[list, list]:
    """True boxes, and detections: moved true boxes (some relabelled) plus false boxes, random scores."""
    g, preds, targets = torch.Generator().manual_seed(seed), [], []
    for i in range(num_images):
        n = int(torch.randint(0, 5, (1,), generator=g))
        true = boxes(n, seed * 1000 + i)
        labels = torch.randint(0, num_classes, (n,), generator=g)
        moved = true + (torch.randn(n, 2, generator=g) * 4).repeat(1, 2)
        false = boxes(2, seed * 1000 + i + 500)
        relabel = torch.where(torch.rand(n, generator=g) < 0.2, (labels + 1) % num_classes, labels)
        pred_labels = torch.cat([relabel, torch.randint(0, num_classes, (2,), generator=g)])
        targets.append({"boxes": true, "labels": labels})
        preds.append(
            {
                "boxes": torch.cat([moved, false]),
                "scores": torch.rand(n + 2, generator=g),
                "labels": pred_labels,
            }
        )
    return preds, targets


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_map_matches_torchmetrics(lesson, seed):
    preds, targets = random_detections(seed)
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
    metric.update(preds, targets)
    reference = metric.compute()
    for iou, key in ((0.5, "map_50"), (0.75, "map_75")):
        ours = lesson.mean_average_precision(preds, targets, iou, lesson.COCO_LEVELS)
        assert ours == pytest.approx(float(reference[key]), abs=1e-6), key
    all_point = lesson.mean_average_precision(preds, targets, 0.5)
    assert all_point == pytest.approx(float(reference["map_50"]), abs=0.03)  # VOC's area: close, not equal


def test_yolo_targets_model_and_loss(lesson):
    target = {
        "boxes": torch.tensor([[10.0, 20.0, 40.0, 44.0], [60.0, 60.0, 90.0, 80.0]]),
        "labels": torch.tensor([3, 1]),
    }
    y = lesson.encode_targets(target, grid=6, canvas=96)  # cells of 16 px
    assert y.shape == (6, 6, 6) and y[..., 0].sum() == 2
    torch.testing.assert_close(
        y[2, 1], torch.tensor([1.0, 25 / 16 - 1, 32 / 16 - 2, (30 / 96) ** 0.5, (24 / 96) ** 0.5, 3.0])
    )
    model = lesson.TinyYOLO(num_classes=5, width=16)
    assert model(torch.rand(2, 1, 96, 96)).shape == (2, 6, 6, 10)
    perfect = torch.cat(
        [y[..., :1] * 20 - 10, torch.logit(y[..., 1:5].clamp(1e-4, 1 - 1e-4)), torch.zeros(6, 6, 5)], -1
    )
    perfect[..., 5:] = torch.nn.functional.one_hot(y[..., 5].long(), 5) * 20.0
    random = torch.randn(1, 6, 6, 10)
    assert lesson.yolo_loss(perfect[None], y[None]) < 0.01 < lesson.yolo_loss(random, y[None])
