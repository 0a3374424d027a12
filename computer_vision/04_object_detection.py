# %% [markdown]
# # 04 · Object detection: boxes, IoU, NMS, mAP and a YOLO-style detector
#
# A classifier says *what* is in an image; a detector says what is *where*: boxes, each with a class
# and a score.
#
# **What you will learn**
# - box formats (`xyxy`, `cxcywh`), IoU and non-maximum suppression by hand, checked against
#   `torchvision.ops`;
# - average precision and mAP by hand (VOC's exact area and COCO's 101 recall levels), checked
#   against `torchmetrics` (pycocotools inside);
# - a YOLO-style one-stage detector: an S x S grid of cells, each predicting objectness, a box and a
#   class, trained with `dlkit.train.fit` on scenes of real images with exact boxes.
#
# Lesson 05 trains a two-stage detector, Faster R-CNN, on the same scenes.

# %%
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset
from torchvision import ops

from dlkit.config import flag
from dlkit.data import choose_dataset, detection_classes, detection_scenes, load_dataset
from dlkit.device import seed_everything
from dlkit.lesson import Lesson, LessonConfig
from dlkit.metrics import detection_map
from dlkit.plots import plot_curves, plot_detections
from dlkit.train import fit, make_loader


@dataclass
class Config(LessonConfig):
    canvas: int = flag(96, help="scenes are canvas x canvas grey images (a multiple of 16)", min=32, max=512)
    min_objects: int = flag(2, help="fewest items pasted in a scene", min=1, max=8)
    max_objects: int = flag(4, help="most items pasted in a scene", min=1, max=8)
    min_size: int = flag(20, help="smallest longer side of a pasted item, in pixels", min=4, max=128)
    max_size: int = flag(36, help="largest longer side of a pasted item, in pixels", min=4, max=128)
    num_train: int = flag(12_000, help="training scenes", min=1)
    num_test: int = flag(500, help="held-out scenes, pasted from the test split's images", min=1)
    width: int = flag(
        32, help="channels of the backbone's second block; later ones 2x and 4x", min=4, max=256
    )
    batch_size: int = 64
    num_epochs: int = flag(8, help="epochs of the YOLO-style detector", min=1, max=200)
    lr: float = flag(3e-3, help="the peak of the OneCycle schedule (AdamW)", above=0, max=1)


QUICK = {"canvas": 64, "min_size": 12, "max_size": 22, "num_train": 1_000, "num_test": 100}
QUICK |= {"num_epochs": 4, "batch_size": 32, "width": 16}
lesson = Lesson("computer_vision/04_object_detection", Config, quick=QUICK)
cfg, device, full = lesson.cfg, lesson.device, not lesson.quick

# %% [markdown]
# ## Boxes, and intersection over union
#
# A box is four numbers in pixels: `xyxy` gives two corners `(x1, y1, x2, y2)`, as IoU, NMS and
# torchvision's detectors want; `cxcywh` gives the centre and the size, as a YOLO cell predicts.
# IoU = area of the overlap / area of the union: 1 for identical boxes, 0 for disjoint ones. It
# judges a detection ("IoU >= 0.5 with a true box of its class") and tells NMS which are duplicates.


# %%
def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], dim=-1)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], dim=-1)


def iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 4) and (M, 4) xyxy boxes -> (N, M) IoU of every pair, by broadcasting N against M."""
    top_left = torch.max(a[:, None, :2], b[None, :, :2])  # (N, M, 2) corners of the overlap
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(dim=2)  # (N, M), 0 when disjoint
    area_a, area_b = (a[:, 2:] - a[:, :2]).prod(dim=1), (b[:, 2:] - b[:, :2]).prod(dim=1)  # (N,), (M,)
    return overlap / (area_a[:, None] + area_b[None, :] - overlap)


def random_boxes(n: int, g: torch.Generator, size: float = 100.0) -> torch.Tensor:
    corner = torch.rand(n, 2, generator=g) * size * 0.7
    return torch.cat([corner, corner + 1 + torch.rand(n, 2, generator=g) * size * 0.29], dim=1)


g = torch.Generator().manual_seed(cfg.seed)
boxes, others = random_boxes(1000, g), random_boxes(800, g)
converted = (xyxy_to_cxcywh(boxes) - ops.box_convert(boxes, "xyxy", "cxcywh")).abs().max()
lesson.record("cxcywh_max_diff", converted, max=1e-4)  # and back: cxcywh_to_xyxy is tested in the tests
lesson.record("iou_max_diff", (iou_matrix(boxes, others) - ops.box_iou(boxes, others)).abs().max(), max=1e-5)

# %% [markdown]
# ## Non-maximum suppression
#
# A detector fires several times around each object. NMS keeps the best-scoring box, drops all that
# overlap it by more than `iou_threshold`, and repeats with the rest. Per-class NMS must not let a
# shoe suppress a bag: shifting each class's boxes beyond the largest coordinate puts classes
# apart, so that one plain NMS does it (torchvision's trick too).


# %%
def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes kept, best score first (the contract of torchvision.ops.nms)."""
    order, keep = scores.argsort(descending=True), []
    while order.numel() > 0:
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[iou_matrix(boxes[best][None], boxes[order])[0] <= iou_threshold]
    return torch.stack(keep) if keep else torch.zeros(0, dtype=torch.int64)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou: float) -> torch.Tensor:
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    return nms(boxes + (labels.to(boxes) * (boxes.max() + 1))[:, None], scores, iou)  # classes apart


boxes = random_boxes(600, g, size=60.0)  # crowded: many overlaps
scores, labels = torch.rand(600, generator=g), torch.randint(0, 3, (600,), generator=g)
kept, kept_by_class = nms(boxes, scores, 0.5), batched_nms(boxes, scores, labels, 0.5)
reference, reference_by_class = ops.nms(boxes, scores, 0.5), ops.batched_nms(boxes, scores, labels, 0.5)
lesson.record("nms_equal", torch.equal(kept, reference), min=1)
lesson.record("batched_nms_equal", torch.equal(kept_by_class, reference_by_class), min=1)
lesson.record("nms_kept_fraction", len(kept) / len(boxes), min=0.05, max=0.9)

# %% [markdown]
# What to notice: conversions and IoU agree with torchvision to float32 rounding, NMS keeps the same
# boxes in the same order; per-class NMS keeps more, since overlaps across classes no longer count.

# %% [markdown]
# ## Scenes: real items pasted on a canvas
#
# `dlkit.data.detection_scenes` pastes 2-4 Fashion-MNIST items (quick mode without it: digits), cut to
# their pixels' box and rescaled, at random places on a black canvas: the boxes are exact. Items never
# overlap, so two centres seldom share a 16-pixel cell (where they do, our YOLO, like YOLO v1, learns
# only one of them). T-shirts, pullovers, coats and shirts look alike at 20 pixels: they become one
# class, "top" (five coarse classes in all). Held-out scenes use the test split's images.

# %%
name = choose_dataset("fashion_mnist", "digits", quick=lesson.quick)
train_items, test_items = load_dataset(name, split="train"), load_dataset(name, split="test")
lesson.uses_data(name, f"scenes pasted from {train_items.source} and (held out) {test_items.source}")
classes, _ = detection_classes(train_items)
num_classes, grid = len(classes), cfg.canvas // 16  # the YOLO backbone downsamples 16 times
scene = {
    "canvas": cfg.canvas,
    "objects": (cfg.min_objects, cfg.max_objects),
    "sizes": (cfg.min_size, cfg.max_size),
}
X_train, train_targets = detection_scenes(train_items, cfg.num_train, seed=cfg.seed, **scene)
X_test, test_targets = detection_scenes(test_items, cfg.num_test, seed=cfg.seed + 1, **scene)
num_objects = sum(len(t["labels"]) for t in test_targets)
print(f"{len(X_train):,} training scenes, {len(X_test):,} held out with {num_objects} objects; {classes}")
lesson.record("objects_per_scene", num_objects / len(X_test), min=cfg.min_objects, max=cfg.max_objects)

# %% [markdown]
# ## Average precision
#
# Rank the detections of one class, over all images, by score. Walking down the list, a detection
# is a true positive when it overlaps a still unmatched true box of its class with IoU >= 0.5.
# Precision = TP / detections so far, recall = TP / true boxes; AP is the area under this curve
# once each precision is raised to the best one at that recall or beyond (the "envelope"). VOC
# takes the exact area ("all-point"), COCO the mean of the envelope at recalls 0, 0.01, ..., 1.
# mAP averages over classes, COCO's mAP@[.5:.95] also over IoU thresholds 0.5, 0.55, ..., 0.95.
# Below we check ours against torchmetrics (pycocotools inside) on our detector's predictions.


# %%
COCO_LEVELS = torch.linspace(0.0, 1.0, 101).double()  # COCO's recall levels, built as torchmetrics does


def match_detections(boxes: torch.Tensor, scores: torch.Tensor, gt: torch.Tensor, iou: float) -> torch.Tensor:
    """(N,) True for the detections (one class, one image) that match a true box: COCO's greedy rule."""
    ious = iou_matrix(boxes.double(), gt.double())  # (N, M)
    is_tp, taken = torch.zeros(len(boxes), dtype=torch.bool), torch.zeros(len(gt), dtype=torch.bool)
    for i in scores.argsort(descending=True, stable=True).tolist():
        candidates = ious[i].masked_fill(taken, -1.0)  # a true box is matched at most once
        if len(gt) > 0 and candidates.max() >= iou:  # the best free true box, if it overlaps enough
            is_tp[i], taken[candidates.argmax()] = True, True
    return is_tp


def average_precision(is_tp: torch.Tensor, scores: torch.Tensor, num_gt: int, levels=None) -> float:
    """Area under the precision envelope: exact (all-point), or its mean at the recall ``levels``."""
    tp = is_tp[scores.argsort(descending=True, stable=True)].double().cumsum(0)  # (N,) TP in the top k
    recall, precision = tp / num_gt, tp / torch.arange(1, len(tp) + 1)
    envelope = precision.flip(0).cummax(0).values.flip(0)  # best precision at this recall or beyond
    if levels is None:
        gained = recall - torch.cat([recall.new_zeros(1), recall[:-1]])  # recall added by each detection
        return float((gained * envelope).sum())
    first = torch.searchsorted(recall, levels)  # the first detection reaching each recall level
    return float(envelope[first[first < len(recall)]].sum() / len(levels))


def mean_average_precision(preds: list[dict], targets: list[dict], iou: float = 0.5, levels=None) -> float:
    """Mean AP over the classes that have true boxes."""
    aps = []
    for c in torch.cat([t["labels"] for t in targets]).unique().tolist():
        flags, scores, num_gt = [], [], 0
        for p, t in zip(preds, targets, strict=True):
            mine, gt = p["labels"] == c, t["boxes"][t["labels"] == c]
            flags.append(match_detections(p["boxes"][mine], p["scores"][mine], gt, iou))
            scores, num_gt = [*scores, p["scores"][mine].double()], num_gt + len(gt)
        aps.append(average_precision(torch.cat(flags), torch.cat(scores), num_gt, levels))
    return sum(aps) / len(aps)


# %% [markdown]
# ## A YOLO-style detector
#
# YOLO (Redmon et al., 2016) divides the image into S x S cells; the cell holding an object's centre
# predicts it: an objectness logit, the centre's offset in the cell (x, y in [0, 1] after a
# sigmoid), the square roots of width and height as fractions of the canvas (so an error costs
# more on a small box) and class logits. A CNN with stride 16 gives 96 / 16 = 6 x 6 cells. The
# targets are one (S, S, 6) tensor per scene, so `dlkit.train.fit` trains it like any other model.


# %%
def encode_targets(target: dict, grid: int, canvas: int) -> torch.Tensor:
    """Boxes and labels -> (S, S, 6): per cell objectness, x and y in the cell, sqrt w, sqrt h, class."""
    cell, y = canvas / grid, torch.zeros(grid, grid, 6)
    centre, size = xyxy_to_cxcywh(target["boxes"]).split(2, dim=1)  # (K, 2) each
    col, row = (centre / cell).long().clamp(max=grid - 1).unbind(1)
    offsets = centre / cell - torch.stack([col, row], dim=1)
    ones, labels = torch.ones(len(col), 1), target["labels"][:, None].float()
    y[row, col] = torch.cat([ones, offsets, (size / canvas).sqrt(), labels], dim=1)
    return y


class TinyYOLO(nn.Module):
    """(B, 1, H, W) -> (B, H/16, W/16, 5 + C): objectness, x, y, sqrt w, sqrt h, class logits per cell."""

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        widths = [1, width // 2, width, 2 * width, 2 * width, 4 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip(widths[:-1], widths[1:], [2, 2, 2, 1, 2, 1, 1], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.backbone = nn.Sequential(*layers)  # (B, 4 * width, S, S): four stride-2 convolutions
        self.head = nn.Conv2d(4 * width, 5 + num_classes, kernel_size=1)  # one prediction per cell

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)).permute(0, 2, 3, 1)  # (B, S, S, 5 + C)


def yolo_loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed over cells, averaged over scenes: objectness everywhere, box and class where an object is."""
    y_hat, has_object = y_hat.float(), y[..., 0] > 0  # the loss in float32, also under autocast
    objectness = F.binary_cross_entropy_with_logits(y_hat[..., 0], y[..., 0], reduction="sum")
    p, t = y_hat[has_object], y[has_object]  # (P, 5 + C) and (P, 6): the responsible cells
    box = F.mse_loss(p[:, 1:5].sigmoid(), t[:, 1:5], reduction="sum")
    cls = F.cross_entropy(p[:, 5:], t[:, 5].long(), reduction="sum")
    return (objectness + 5 * box + cls) / len(y)  # YOLO v1 weighs the box error 5 times


@torch.no_grad()
def yolo_detect(model: nn.Module, X: torch.Tensor, min_score: float = 0.05, iou: float = 0.5) -> list[dict]:
    """Every cell gives one box per class, scored objectness x class probability; then per-class NMS."""
    model.eval()  # batch norm uses its running statistics
    cells, preds = torch.stack(torch.meshgrid(*[torch.arange(grid)] * 2, indexing="xy"), -1), []  # (S, S, 2)
    for batch in X.split(256):
        y_hat = model(batch.to(device)).float().cpu()  # (B, S, S, 5 + C)
        centre = (y_hat[..., 1:3].sigmoid() + cells) * cfg.canvas / grid  # (B, S, S, 2) in pixels
        size = y_hat[..., 3:5].sigmoid().square() * cfg.canvas
        boxes = cxcywh_to_xyxy(torch.cat([centre, size], dim=-1)).flatten(1, 2)  # (B, S*S, 4)
        scores = (y_hat[..., :1].sigmoid() * y_hat[..., 5:].softmax(-1)).flatten(1, 2)  # (B, S*S, C)
        for b, s in zip(boxes, scores, strict=True):
            cell, label = (s > min_score).nonzero(as_tuple=True)
            keep = batched_nms(b[cell], s[cell, label], label, iou)
            preds.append({"boxes": b[cell][keep], "scores": s[cell, label][keep], "labels": label[keep]})
    return preds


# %%
Y_train = torch.stack([encode_targets(t, grid, cfg.canvas) for t in train_targets])  # (N, S, S, 6)
Y_test = torch.stack([encode_targets(t, grid, cfg.canvas) for t in test_targets])
lesson.record("encoded_fraction", Y_test[..., 0].sum() / num_objects, min=0.97, max=1.0)  # a cell each
seed_everything(cfg.seed)
model = TinyYOLO(num_classes, cfg.width).to(device)
model = model.to(memory_format=torch.channels_last) if device.type == "cuda" else model
data = TensorDataset(X_train.to(device), Y_train.to(device))  # all on the GPU when there is one
train_loader = make_loader(data, cfg.batch_size, shuffle=True)
test_loader = make_loader(TensorDataset(X_test.to(device), Y_test.to(device)), 256, shuffle=False)
optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
steps = cfg.num_epochs * len(train_loader)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=steps)
history = fit(model, optimizer, train_loader, test_loader, loss_fn=yolo_loss, num_epochs=cfg.num_epochs,
              device=device, scheduler=scheduler, scheduler_interval="batch", verbose=full)  # fmt: skip
yolo_preds = yolo_detect(model, X_test)
yolo = detection_map(yolo_preds, test_targets)
print(f"YOLO-style: mAP@0.5 {yolo['map_50']:.3f}, mAP@[.5:.95] {yolo['map']:.3f} on held-out scenes")
losses = {"train": history.column("train_loss"), "held out": history.column("val_loss")}
lesson.savefig(plot_curves(losses, title="YOLO-style loss", xlabel="epoch", ylabel="loss"), "yolo_loss")
ap_101, ap_all = (mean_average_precision(yolo_preds, test_targets, 0.5, r) for r in (COCO_LEVELS, None))
lesson.record("map50_101_point_diff", abs(ap_101 - yolo["map_50"]), max=1e-6)
lesson.record("map50_all_point_diff", abs(ap_all - yolo["map_50"]), max=0.02)
merged = [[{**d, "labels": 0 * d["labels"]} for d in ds] for ds in (yolo_preds, test_targets)]  # 1 class
found = detection_map(*merged)["map_50"]
print(f"all classes merged into one (finding objects, whatever their class): mAP@0.5 {found:.3f}")
shown = {"YOLO-style": yolo_preds}  # quick mode's detector is unsure: show its detections over 0.2
lesson.savefig(
    plot_detections(X_test, test_targets, shown, classes, min_score=0.5 if full else 0.2), "detections"
)

# %% [markdown]
# What to notice: with COCO's rule and 101 recall levels our mAP@0.5 is pycocotools' to float32
# rounding; the exact area (VOC) differs a little: papers say which one they report. Finding objects
# is easier than naming them (the merged mAP is the higher one); the misses are mostly wrong classes
# between look-alikes such as dresses and coats. Boxes are tight enough for IoU 0.5 far more often
# than for 0.9, which is why mAP@[.5:.95] is the lower number. In the figure, true boxes are dashed
# green and detections scoring over 0.5 (0.2 in quick mode) orange.
#
# ## What you measured
#
# Box conversion, IoU, NMS and AP by hand match torchvision and pycocotools; the YOLO-style detector,
# trained from scratch in minutes on a CPU in full mode, finds and names the items of held-out
# scenes: its mAP@0.5 (at least 0.9 in full mode) and mAP@[.5:.95] are the outcomes below. Quick mode
# trains on smaller scenes for a few epochs: its mAP only has to show that the detector learned.

# %%
chance = 0.0  # a detector that finds nothing, or only boxes at random places, scores an mAP of about 0
lesson.record("yolo_map50_class_agnostic", found, min=0.95 if full else 0.3, chance=chance)
lesson.record("yolo_map50", yolo["map_50"], min=0.90 if full else 0.05, chance=chance)
lesson.record("yolo_map", yolo["map"], min=0.5 if full else 0.015, chance=chance)
lesson.record("yolo_loss_ratio", history.rows[-1]["train_loss"] / history.rows[0]["train_loss"], max=0.9)
lesson.finish()

# %% [markdown]
# ## Exercises
# Each cell below holds a stub: read its docstring, replace `raise NotImplementedError` with your
# code, then run the check cell at the end (or `dlkit check computer_vision/04` in a terminal). The
# checks compare your code with `torchvision.ops` on random boxes.

# %% tags=["exercise"]
import torch


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 4) and (M, 4) xyxy boxes -> (N, M) generalized IoU: `IoU - (hull - union) / hull`.

    `hull` is the area of the smallest box enclosing both boxes. Unlike IoU, GIoU still tells
    disjoint boxes apart (the farther, the closer to -1), which makes `1 - GIoU` a usable box loss.
    Start from the lesson's `iou_matrix`; the check compares with `torchvision.ops.generalized_box_iou`.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def postprocess_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
) -> torch.Tensor:
    """A detector's last step: the (K,) int64 indices (into the N inputs) of the detections kept, best first.

    Keep the boxes scored above `score_threshold`, run NMS per class on them (a box suppresses only
    boxes of its own label: `torchvision.ops.batched_nms`, or the lesson's `batched_nms`), then keep the
    `max_detections` best. boxes (N, 4) xyxy, scores (N,), labels (N,).
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss (RetinaNet), elementwise (shape of logits): `alpha_t * (1 - p_t)**gamma * BCE`.

    `yolo_loss` sums the objectness BCE over every cell, and most cells are empty and easy. With
    p = sigmoid(logit), `p_t = p` where the target is 1 and `1 - p` where it is 0, and
    `alpha_t = alpha` for targets 1, `1 - alpha` for 0: confident right answers weigh almost nothing.
    Take the BCE from the logits (stable for +-40 in float32). Oracle: `torchvision.ops.sigmoid_focal_loss`.
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
