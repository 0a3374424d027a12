"""The image classifier's networks, built by name: ``build_model("resnet_small", num_classes=10)``.

Every model takes images as float tensors (B, C, H, W) with values in [0, 1] (pixels / 255) and
returns logits (B, num_classes). **Normalisation happens inside the model**: its first layer is
:class:`Normalize`, whose per-channel ``mean`` and ``std`` are buffers saved in the state dict. A
caller (export, predict, serve) therefore only resizes to the training size and divides by 255;
model_info.json says so with ``"normalize_in_model": true`` and mean 0, std 1 in ``preprocessing``.

- ``resnet_small``: the network of Keller Jordan's airbench94 (cifar10-airbench), which reaches 94%
  on CIFAR-10 in a few seconds on one GPU: a fixed 2x2 patch-whitening convolution, then three
  groups of (conv, max-pool, BatchNorm, GELU, conv, BatchNorm, GELU), a global max-pool and a scaled
  linear head. Each 3x3 convolution starts as the identity on its first channels (Dirac init), which
  gives the plain stack a residual network's easy start without skip connections. Any input size
  from 16x16 up works (32x32 and 28x28 included); ``widths`` trades accuracy for speed.
- ``resnet18``: torchvision's ResNet-18 adapted to small images (He et al., 2016, section 4.2 for
  CIFAR): a 3x3 stride-1 stem and no max-pool, so a 32x32 input keeps its resolution early on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MODELS",
    "AirbenchNet",
    "Normalize",
    "build_model",
    "model_from_info",
    "model_from_metadata",
    "resnet18_small_images",
]

# Per-channel statistics of the CIFAR-10 training set; grey images use their mean.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean and std saved in the state dict."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def default_stats(in_channels: int) -> tuple[list[float], list[float]]:
    """CIFAR-10's mean and std for 3 channels, their averages repeated otherwise."""
    if in_channels == 3:
        return list(CIFAR10_MEAN), list(CIFAR10_STD)
    return [sum(CIFAR10_MEAN) / 3] * in_channels, [sum(CIFAR10_STD) / 3] * in_channels


# --- resnet_small: the airbench94 network ----------------------------------------------------------


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm with a frozen scale of 1 (only the shift learns), as airbench does.

    ``momentum`` is airbench's: the weight of the old running statistics (0.6), i.e. PyTorch's 0.4.
    """

    def __init__(self, num_features: int, momentum: float = 0.6, eps: float = 1e-12) -> None:
        super().__init__(num_features, eps=eps, momentum=1 - momentum)
        self.weight.requires_grad_(False)


class Conv(nn.Conv2d):
    """A bias-free 3x3 'same' convolution whose first ``in_channels`` filters start as the identity."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        w = self.weight.data
        nn.init.dirac_(w[: w.size(1)])


class ConvGroup(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, bn_momentum: float) -> None:
        super().__init__(
            Conv(in_channels, out_channels),
            nn.MaxPool2d(2),  # pooling before the norm: cheaper, and airbench found it as accurate
            BatchNorm(out_channels, bn_momentum),
            nn.GELU(),
            Conv(out_channels, out_channels),
            BatchNorm(out_channels, bn_momentum),
            nn.GELU(),
        )


class AirbenchNet(nn.Module):
    """airbench94's network: (B, C, H, W) in [0, 1] -> logits (B, num_classes)."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 256, 256),
        bn_momentum: float = 0.6,
        scale: float = 1 / 9,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        default_mean, default_std = default_stats(in_channels)
        self.normalize = Normalize(mean or default_mean, std or default_std)
        whiten_width = 2 * in_channels * 2 * 2  # +-eigenvectors of the 2x2 patches' covariance
        # The whitening filters come from the data (init_whitening) and are never trained.
        self.whiten = nn.Conv2d(in_channels, whiten_width, kernel_size=2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        nn.init.zeros_(self.whiten.bias)
        self.act = nn.GELU()
        w1, w2, w3 = widths
        self.layers = nn.Sequential(
            ConvGroup(whiten_width, w1, bn_momentum),
            ConvGroup(w1, w2, bn_momentum),
            ConvGroup(w2, w3, bn_momentum),
        )
        self.pool = nn.AdaptiveMaxPool2d(1)  # airbench's MaxPool2d(3) on its 3x3 map, for any size
        self.head = nn.Linear(w3, num_classes, bias=False)
        self.scale = scale  # small logits at the start: airbench's 1/9

    @torch.no_grad()
    def init_whitening(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from training images ``x`` (N, C, H, W) in [0, 1] (a few thousand)."""
        x = self.normalize(x.float().to(self.whiten.weight.device))
        C, k = x.shape[1], self.whiten.kernel_size[0]
        patches = x.unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H', W', k, k)
        patches = patches.transpose(1, 3).reshape(-1, C * k * k).double()  # (N*W'*H', C*k*k)
        patches = patches - patches.mean(0)
        eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
        filters = eigenvectors.T.reshape(-1, C, k, k)  # (C*k*k, C, k, k): one filter per eigenvector
        filters = filters / torch.sqrt(eigenvalues.clamp_min(0) + eps).view(-1, 1, 1, 1)
        self.whiten.weight.copy_(torch.cat([filters, -filters]).to(self.whiten.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The bias is added apart from the convolution: with a frozen weight and an input that needs
        # no gradient, autograd then skips the convolution's backward (on CPU it cost 2/3 of a step).
        x = F.conv2d(self.normalize(x), self.whiten.weight)  # (B, 2*C*4, H-1, W-1)
        x = self.act(x + self.whiten.bias.view(1, -1, 1, 1))
        x = self.layers(x)  # (B, w3, (H-1)/8, (W-1)/8)
        x = self.pool(x).flatten(1)  # (B, w3)
        return self.head(x) * self.scale  # (B, num_classes)


def resnet_small(num_classes: int, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    return AirbenchNet(num_classes, in_channels, **kwargs)


# --- resnet18 for small images ---------------------------------------------------------------------


def resnet18_small_images(
    num_classes: int,
    in_channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Module:
    """torchvision's ResNet-18 with a 3x3 stride-1 stem and no max-pool, behind :class:`Normalize`."""
    from torchvision.models import resnet18

    net = resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()  # type: ignore[assignment]
    default_mean, default_std = default_stats(in_channels)
    return nn.Sequential(Normalize(mean or default_mean, std or default_std), net)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet_small": resnet_small,
    "resnet18": resnet18_small_images,
}


def build_model(name: str, num_classes: int, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """The model registered as ``name``; ``kwargs`` (e.g. ``widths``, ``mean``, ``std``) go to its builder."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](num_classes=num_classes, in_channels=in_channels, **kwargs)


def model_from_info(info: dict[str, Any]) -> nn.Module:
    """The untrained network a run folder's model_info.json describes (for ``dlkit.runs.load_trained``)."""
    return build_model(info["model"], info["num_classes"], info["in_channels"], **info["model_kwargs"])


def model_from_metadata(metadata: dict[str, Any]) -> nn.Module:
    """The untrained network a release's model.json describes (for ``dlkit.export.load_release``)."""
    arch = metadata["architecture"]
    return build_model(arch["name"], metadata["num_classes"], metadata["in_channels"], **arch["kwargs"])
