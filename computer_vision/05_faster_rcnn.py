# %% [markdown]
# # 05 · Faster R-CNN: a two-stage detector, piece by piece
#
# Lesson 04's YOLO-style detector predicts a box from every cell of a grid in one pass. Faster R-CNN
# (Ren et al., 2015) works in two stages: a region proposal network (RPN) scores **anchor** boxes of
# several sizes and shapes at every position of a feature map and keeps the best few hundred as
# proposals; **RoIAlign** cuts a fixed-size patch of features out of each proposal; a head then
# classifies each patch (a class, or "background") and refines its box. Both stages predict boxes as
# **offsets** from a reference box, not as pixels.
#
# **What you will learn**
# - anchors: torchvision's `AnchorGenerator`, reproduced by hand;
# - box coding: the offsets (dx, dy, dw, dh) a detector predicts, encoded and decoded by hand and
#   checked against torchvision's `BoxCoder`;
# - RoIAlign by hand (bilinear samples, averaged per bin), equal to `torchvision.ops.roi_align`;
# - training torchvision's Faster R-CNN (MobileNetV3 + FPN) on lesson 04's scenes, from COCO weights
#   when they can be had, else from random ones, and its mAP on held-out scenes.

# %%
import time
from dataclasses import dataclass

import torch
from torch import nn
from torchvision import ops
from torchvision.models.detection import FasterRCNN_MobileNet_V3_Large_320_FPN_Weights as COCOWeights
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList

from dlkit.config import flag
from dlkit.data import choose_dataset, detection_classes, detection_scenes, load_dataset
from dlkit.device import autocast, resolve_amp_dtype, seed_everything
from dlkit.lesson import Lesson, LessonConfig
from dlkit.metrics import detection_map
from dlkit.plots import plot_curves, plot_detections
from dlkit.pretrained import BackboneNotAvailableError, hub_checkpoint


@dataclass
class Config(LessonConfig):
    canvas: int = flag(96, help="scenes are canvas x canvas grey images, as in lesson 04", min=32, max=512)
    num_train: int = flag(2_000, help="training scenes (each step draws a random batch of them)", min=1)
    num_test: int = flag(500, help="held-out scenes, pasted from the test split's images", min=1)
    iters: int = flag(240, help="optimizer steps", min=1, max=100_000)
    batch_size: int = 8
    lr: float = flag(1e-3, help="the peak of the OneCycle schedule (AdamW)", above=0, max=1)
    image_size: int = flag(
        160, help="Faster R-CNN resizes each scene to this many pixels a side", min=64, max=800
    )


QUICK = {"num_train": 8, "num_test": 8, "iters": 16, "batch_size": 2}  # overfit a few scenes: does it learn?
lesson = Lesson("computer_vision/05_faster_rcnn", Config, quick=QUICK)
cfg, device, full = lesson.cfg, lesson.device, not lesson.quick

# %% [markdown]
# ## Anchors
#
# An anchor is a reference box. At every position of a feature map with stride `s` (one feature per
# `s` x `s` pixels) the RPN places one anchor per (size, aspect ratio) pair, centred on that position;
# aspect ratio r = height / width at the same area. For each anchor it predicts whether an object is
# there and how to move the anchor onto it. Generating them is broadcasting:


# %%
def anchors_by_hand(
    sizes: list[float], ratios: list[float], grid: tuple[int, int], stride: int
) -> torch.Tensor:
    """(grid_h * grid_w * len(ratios) * len(sizes), 4) xyxy anchors, position by position, as torchvision."""
    h_ratio = torch.tensor(ratios).sqrt()  # height grows with sqrt(r), width shrinks: the area stays
    ws = (torch.tensor(sizes)[None, :] / h_ratio[:, None]).flatten()  # (A,) ratios outer, sizes inner
    hs = (torch.tensor(sizes)[None, :] * h_ratio[:, None]).flatten()
    base = (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()  # (A, 4) centred on (0, 0)
    ys, xs = torch.meshgrid(torch.arange(grid[0]) * stride, torch.arange(grid[1]) * stride, indexing="ij")
    shifts = torch.stack([xs, ys, xs, ys], dim=-1).reshape(-1, 1, 4).float()  # (positions, 1, 4)
    return (shifts + base[None]).reshape(-1, 4)


sizes, ratios, grid, stride = [32.0, 64.0], [0.5, 1.0, 2.0], (5, 7), 16
generator = AnchorGenerator(sizes=(tuple(sizes),), aspect_ratios=(tuple(ratios),))
images = ImageList(
    torch.zeros(1, 3, grid[0] * stride, grid[1] * stride), [(grid[0] * stride, grid[1] * stride)]
)
theirs = generator(images, [torch.zeros(1, 8, *grid)])[0]  # one feature map of shape (5, 7)
ours = anchors_by_hand(sizes, ratios, grid, stride)
print(f"{len(ours)} anchors = {grid[0]} x {grid[1]} positions x {len(sizes) * len(ratios)}; the first six:")
print(ours[:6].tolist())
lesson.record("anchors_max_abs_diff", (ours - theirs).abs().max(), max=0.0)

# %% [markdown]
# What to notice: six boxes share a centre; their areas are 32² or 64², their shapes wide, square and
# tall. Real detectors use a few thousand anchors per image, over several feature maps (the FPN:
# small anchors on fine maps, large ones on coarse maps).
#
# ## Box coding: what a detector predicts
#
# A network predicts small numbers more easily than pixel coordinates. Relative to a reference box
# with centre (x_a, y_a) and size (w_a, h_a), a box (x, y, w, h) becomes
# `dx = (x - x_a) / w_a`, `dy = (y - y_a) / h_a`, `dw = log(w / w_a)`, `dh = log(h / h_a)`, each times
# a weight (10, 10, 5, 5 in Faster R-CNN's head, so that the targets have about unit variance).
# Decoding inverts it; the log makes widths positive whatever the network outputs.


# %%
def encode_by_hand(boxes: torch.Tensor, refs: torch.Tensor, weights=(10.0, 10.0, 5.0, 5.0)) -> torch.Tensor:
    """(N, 4) xyxy boxes relative to (N, 4) xyxy reference boxes -> (N, 4) offsets (dx, dy, dw, dh)."""
    (x, y, w, h), (xa, ya, wa, ha) = (ops.box_convert(b, "xyxy", "cxcywh").unbind(1) for b in (boxes, refs))
    wx, wy, ww, wh = weights
    return torch.stack(
        [wx * (x - xa) / wa, wy * (y - ya) / ha, ww * torch.log(w / wa), wh * torch.log(h / ha)], 1
    )


def decode_by_hand(offsets: torch.Tensor, refs: torch.Tensor, weights=(10.0, 10.0, 5.0, 5.0)) -> torch.Tensor:
    """The inverse of encode_by_hand: (N, 4) offsets and reference boxes -> (N, 4) xyxy boxes."""
    xa, ya, wa, ha = ops.box_convert(refs, "xyxy", "cxcywh").unbind(1)
    dx, dy, dw, dh = (offsets / torch.tensor(weights)).unbind(1)
    cxcywh = torch.stack([xa + dx * wa, ya + dy * ha, wa * dw.exp(), ha * dh.exp()], dim=1)
    return ops.box_convert(cxcywh, "cxcywh", "xyxy")


g = torch.Generator().manual_seed(cfg.seed)
refs = ours[torch.randperm(len(ours), generator=g)[:50]].double()  # (50, 4) some anchors
boxes = refs + torch.randn(50, 4, generator=g, dtype=torch.float64) * 4  # nearby boxes
coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
codes = encode_by_hand(boxes, refs)
lesson.record("encode_max_abs_diff", (codes - coder.encode_single(boxes, refs)).abs().max(), max=1e-9)
decoded = decode_by_hand(codes, refs)
lesson.record("decode_max_abs_diff", (decoded - coder.decode_single(codes, refs)).abs().max(), max=1e-9)
lesson.record("round_trip_max_abs_diff", (decoded - boxes).abs().max(), max=1e-9)

# %% [markdown]
# ## RoIAlign: a fixed-size patch of features from any box
#
# The second stage needs the same number of features from a 10-pixel proposal and a 60-pixel one.
# RoIAlign (He et al., 2017) cuts the box into P x P bins and, in each bin, samples the feature map at
# `sampling_ratio`² evenly spaced points by **bilinear interpolation** (no rounding of the box to the
# feature grid: its predecessor, RoIPool, rounded, and lost small objects), then averages them.
# Coordinates are scaled by the map's stride and shifted half a pixel (`aligned=True`), so that
# pixel centres line up.


# %%
def bilinear(features: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """features (C, H, W) at every (y, x) of ys (Ny,) x xs (Nx,) -> (C, Ny, Nx), RoIAlign's rules:
    0 outside [-1, size]; between the last pixel centre and the border, the last pixel's value."""

    def corners(v: torch.Tensor, size: int):
        inside, v = (v >= -1) & (v <= size), v.clamp(min=0)
        low = v.floor().long().clamp(max=size - 1)
        frac = torch.where(low >= size - 1, torch.zeros_like(v), v - low)
        return low, (low + 1).clamp(max=size - 1), frac, inside

    (y0, y1, ly, y_in), (x0, x1, lx, x_in) = corners(ys, features.shape[1]), corners(xs, features.shape[2])
    rows = [features[:, y] for y in (y0, y1)]  # 2 x (C, Ny, W)
    top, bottom = (r[:, :, x0] * (1 - lx) + r[:, :, x1] * lx for r in rows)  # (C, Ny, Nx)
    return (top * (1 - ly)[:, None] + bottom * ly[:, None]) * (y_in[:, None] & x_in[None, :])


def roi_align_by_hand(features, boxes, output_size: int, spatial_scale: float, sampling_ratio: int):
    """features (C, H, W), boxes (K, 4) xyxy image pixels -> (K, C, P, P), as roi_align(aligned=True)."""
    P, n, out = output_size, sampling_ratio, []
    for x1, y1, x2, y2 in (boxes * spatial_scale - 0.5).tolist():  # to feature-map coordinates
        steps = (torch.arange(P * n, dtype=features.dtype) + 0.5) / n  # sample points, in bins
        ys, xs = y1 + steps * (y2 - y1) / P, x1 + steps * (x2 - x1) / P  # (P n,) each
        out.append(bilinear(features, ys, xs).view(-1, P, n, P, n).mean(dim=(2, 4)))  # bin means
    return torch.stack(out)


features = torch.randn(4, 12, 10, generator=g, dtype=torch.float64)  # (C, H, W): a stride-8 map
rois = torch.tensor(
    [[8.0, 8.0, 40.0, 30.0], [0.0, 0.0, 80.0, 96.0], [50.5, 20.25, 61.0, 33.0], [-10.0, 70.0, 30.0, 110.0]],
    dtype=torch.float64,
)  # the last hangs over the border
ours = roi_align_by_hand(features, rois, 7, 1 / 8, 2)  # (4, 4, 7, 7)
theirs = ops.roi_align(features[None], [rois], 7, spatial_scale=1 / 8, sampling_ratio=2, aligned=True)
lesson.record("roi_align_max_abs_diff", (ours - theirs).abs().max(), max=1e-9)  # fmt: skip
print(f"RoIAlign: {tuple(ours.shape)} patches from boxes of {ops.box_area(rois).int().tolist()} pixels")

# %% [markdown]
# ## Faster R-CNN on lesson 04's scenes
#
# torchvision's `fasterrcnn_mobilenet_v3_large_320_fpn`, sized for small inputs: a MobileNetV3
# backbone with a feature pyramid, an RPN over its maps, and a two-layer box head on RoIAligned 7 x 7
# patches. It starts from COCO weights when it can get them (full mode: torch hub's cache, else a
# download with a timeout of its own on every read), else from random ones; its last layer is
# replaced for our classes (plus "background", class 0). Fewer proposals, and from scratch a narrower
# box head, keep a step affordable on a CPU. In train mode it takes images and targets and returns
# its four losses (the RPN's objectness and box offsets, the head's class and box offsets).

# %%
name = choose_dataset("fashion_mnist", "digits", quick=lesson.quick)
train_items, test_items = load_dataset(name, split="train"), load_dataset(name, split="test")
lesson.uses_data(name, f"scenes pasted from {train_items.source} and (held out) {test_items.source}")
classes, _ = detection_classes(train_items)
X_train, train_targets = detection_scenes(train_items, cfg.num_train, seed=cfg.seed, canvas=cfg.canvas)
X_test, test_targets = detection_scenes(test_items, cfg.num_test, seed=cfg.seed + 1, canvas=cfg.canvas)


def make_faster_rcnn() -> tuple[nn.Module, str]:
    """The detector and where its weights came from: COCO's (from the cache, or downloaded in full mode)."""
    kwargs = {"min_size": cfg.image_size, "max_size": cfg.image_size, "box_batch_size_per_image": 32}
    kwargs |= {"rpn_post_nms_top_n_train": 300, "rpn_post_nms_top_n_test": 50, "weights_backbone": None}
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, num_classes=91, **kwargs)
    try:
        path = hub_checkpoint(COCOWeights.COCO_V1.url, download=full)  # quick mode never downloads
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        source = f"fine-tuned from COCO weights ({path})"
    except BackboneNotAvailableError as error:
        print(f"no COCO weights ({error}): every weight starts random")
        model.roi_heads.box_head, source = TwoMLPHead(256 * 7 * 7, 256), "from scratch (no COCO weights)"
    features = model.roi_heads.box_head.fc7.out_features
    model.roi_heads.box_predictor = FastRCNNPredictor(features, len(classes) + 1)  # + background
    return model.to(device), source


def train_faster_rcnn(model: nn.Module) -> list[float]:
    """``cfg.iters`` AdamW steps on random batches of scenes; returns the loss of every step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=cfg.iters)
    g, amp_dtype, losses = torch.Generator().manual_seed(cfg.seed), resolve_amp_dtype(None, device), []
    model.train()
    for _ in range(cfg.iters):
        idx = torch.randint(len(X_train), (cfg.batch_size,), generator=g).tolist()
        targets = [{k: v.to(device) for k, v in train_targets[i].items()} for i in idx]
        targets = [t | {"labels": t["labels"] + 1} for t in targets]  # label 0 is the background
        with autocast(device, amp_dtype):
            images = list(X_train[idx].expand(-1, 3, -1, -1).to(device))  # (3, H, W) each: grey x 3
            loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)  # from scratch, an early step can blow up
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return losses


seed_everything(cfg.seed)
rcnn, source = make_faster_rcnn()
lesson.uses_data("faster_rcnn", f"fasterrcnn_mobilenet_v3_large_320_fpn, {source}")
start = time.perf_counter()
losses = train_faster_rcnn(rcnn)
seconds = time.perf_counter() - start
print(
    f"{cfg.iters} steps of {cfg.batch_size} scenes: {seconds:.0f} s; loss {losses[0]:.2f} -> {losses[-1]:.2f}"
)
with torch.no_grad():  # in eval mode the model returns the boxes, scores and labels of each image
    outputs = [o for x in X_test.split(32) for o in rcnn.eval()(list(x.expand(-1, 3, -1, -1).to(device)))]
rcnn_preds = [{k: v.cpu() for k, v in o.items()} | {"labels": o["labels"].cpu() - 1} for o in outputs]
rcnn_map = detection_map(rcnn_preds, test_targets)
print(
    f"Faster R-CNN: mAP@0.5 {rcnn_map['map_50']:.3f}, mAP@[.5:.95] {rcnn_map['map']:.3f} on held-out scenes"
)
lesson.savefig(
    plot_curves({"loss": losses}, title="Faster R-CNN, sum of its four losses", xlabel="step"), "loss"
)
lesson.savefig(plot_detections(X_test, test_targets, {"Faster R-CNN": rcnn_preds}, classes), "detections")

# %% [markdown]
# What to notice: from random weights, a few hundred steps (a fraction of one pass over the scenes in
# full mode) bring mAP@0.5 well above zero but far below lesson 04's YOLO-style detector: two stages
# cost more per image, and a large pretrained architecture needs far more steps from scratch than a
# small one built for the task. From COCO weights it starts knowing what an object is. Quick mode
# trains sixteen steps on eight scenes: its loss must fall, which shows that every part learns.
#
# ## What you measured
#
# Anchors, box coding and RoIAlign written by hand equal torchvision's; Faster R-CNN's loss falls as
# it trains, and in full mode its mAP on held-out scenes is clearly above zero.

# %%
k = max(1, cfg.iters // 4)  # the mean loss of the last quarter of the steps against the first quarter's
lesson.record("loss_ratio", sum(losses[-k:]) / sum(losses[:k]), max=0.75)
if full:  # quick mode's eight scenes and 16 steps only show that the loss falls
    lesson.record("rcnn_map50", rcnn_map["map_50"], min=0.1, chance=0.0)
lesson.finish()

# %% [markdown]
# ## Exercises
# Each cell below holds a stub: read its docstring, replace `raise NotImplementedError` with your
# code, then run the check cell at the end (or `dlkit check computer_vision/05` in a terminal). The
# checks compare your code with the parts torchvision's Faster R-CNN uses.

# %% tags=["exercise"]
import torch


def match_anchors(iou: torch.Tensor, high: float, low: float) -> torch.Tensor:
    """The RPN's anchor labels: iou (G boxes, A anchors) -> (A,) int64, a box index, -1 or -2 per anchor.

    An anchor whose best IoU is >= high gets that box's index; below low it is background (-1); in
    between it is ignored (-2). Then every box also claims its best anchor(s), ties included, even
    under `high` (else a box that no anchor fits well would get none): such an anchor gets its own
    best box. The check compares it with torchvision's `Matcher(high, low, allow_low_quality_matches=True)`.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def decode_boxes(
    offsets: torch.Tensor, anchors: torch.Tensor, image_size: tuple[int, int], weights=(1.0, 1.0, 1.0, 1.0)
) -> torch.Tensor:
    """Decode (N, 4) offsets against (N, 4) xyxy anchors into (N, 4) xyxy boxes clipped to the image.

    As the lesson's `decode_by_hand`, with two guards a real detector needs: after dividing by the
    weights, clamp dw and dh at `log(1000 / 16)` before `exp` (an untrained head can output huge
    values), and clip x to [0, W] and y to [0, H], image_size = (H, W). The check compares it with
    `BoxCoder(weights).decode_single` followed by `ops.clip_boxes_to_image`.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def rpn_loss(
    objectness: torch.Tensor, offsets: torch.Tensor, matches: torch.Tensor, target_offsets: torch.Tensor
):
    """The RPN's two losses for A anchors: return `(objectness_loss, box_loss)`, two scalars.

    objectness (A,) logits; offsets and target_offsets (A, 4); matches (A,) from `match_anchors`
    (>= 0 an object, -1 background, -2 ignored). Objectness: binary cross-entropy on the logits over
    the anchors not ignored (target 1 for an object). Box: smooth L1 with beta=1/9 on the positive
    anchors only, summed, divided by the number of anchors not ignored. The check compares with
    torchvision's `RegionProposalNetwork.compute_loss` (here without its random sampling).
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
