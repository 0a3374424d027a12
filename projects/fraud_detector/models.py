"""The detectors: an autoencoder and Deep SVDD (unsupervised), an MLP and logistic regression (supervised),
each behind the same :class:`FraudScorer`: raw transaction features in, one suspicion score per row out.

    scorer = FraudScorer(Preprocess.fit(x_train, log_columns), build_net(spec), "reconstruction")
    scorer(x)                          # (N, F) raw features -> (N,) scores, higher = more suspicious

The scorer holds everything that turns a row of the file into a score (the log transform of heavy-tailed
columns, the scaling statistics, the network and the score's own normalisation) as buffers and weights,
so the release's safetensors, its ONNX graph and this module compute the same number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MODELS",
    "SUPERVISED",
    "UNSUPERVISED",
    "Autoencoder",
    "DeepSVDD",
    "FraudScorer",
    "MLPClassifier",
    "Preprocess",
    "build_net",
    "focal_loss",
    "trimmed_mean",
]

UNSUPERVISED = ("autoencoder", "deep_svdd")
SUPERVISED = ("mlp", "logistic")
MODELS = (*UNSUPERVISED, *SUPERVISED)


class Preprocess(nn.Module):
    """x -> squash((t(x) - center) / scale) per column, where t is sign(x) log(1 + |x|) on the heavy-tailed
    columns (an amount spans cents to thousands) and the identity elsewhere, and squash(z) =
    c asinh(z / c): the identity near 0, logarithmic beyond ``c`` (``squash``; 0: off), so that a column
    with a few wild values cannot drown the others, while the order of values stays as it was.

    Robust statistics of the training rows: the median, and the interquartile range / 1.349 (the
    standard deviation of a normal distribution with that IQR), so that the rare extreme rows, which
    are what we look for, do not set the scale that should make them stand out. A column whose IQR is 0
    (mostly one value) falls back to its standard deviation, a constant one to 1.
    """

    def __init__(self, num_features: int, squash: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("log_mask", torch.zeros(num_features, dtype=torch.bool))
        self.register_buffer("center", torch.zeros(num_features))
        self.register_buffer("scale", torch.ones(num_features))
        self.squash = float(squash)

    @classmethod
    def fit(
        cls, x: torch.Tensor, log_columns: Sequence[int] = (), squash: float = 0.0, max_rows: int = 200_000
    ) -> Preprocess:
        pre = cls(x.shape[1], squash)
        pre.log_mask[list(log_columns)] = True
        t = pre.transform(x).double()
        sample = t[torch.randperm(len(t), generator=torch.Generator().manual_seed(0))[:max_rows]]
        q = torch.quantile(sample, torch.tensor([0.25, 0.5, 0.75], dtype=t.dtype), dim=0)
        scale = (q[2] - q[0]) / 1.349
        std = t.std(0) if len(t) > 1 else torch.ones(t.shape[1], dtype=t.dtype)
        scale = torch.where(scale > 1e-8, scale, torch.where(std > 1e-8, std, torch.ones_like(std)))
        pre.center.copy_(q[1])
        pre.scale.copy_(scale)
        return pre

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.log_mask, torch.sign(x) * torch.log1p(x.abs()), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.transform(x) - self.center) / self.scale
        return self.squash * torch.asinh(z / self.squash) if self.squash else z

    def stats(self, features: Sequence[str]) -> dict[str, Any]:
        """The statistics as plain JSON, for model.json (a reader without torch can apply them)."""
        return {
            "features": list(features),
            "log1p_columns": [f for f, m in zip(features, self.log_mask.tolist(), strict=True) if m],
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "squash": self.squash,
        }

    @classmethod
    def from_stats(cls, stats: dict[str, Any]) -> Preprocess:
        pre = cls(len(stats["features"]), stats.get("squash", 0.0))
        pre.log_mask.copy_(torch.tensor([f in stats["log1p_columns"] for f in stats["features"]]))
        pre.center.copy_(torch.tensor(stats["center"]))
        pre.scale.copy_(torch.tensor(stats["scale"]))
        return pre


def _mlp(sizes: Sequence[int], bias: bool = True) -> nn.Sequential:
    """Linear layers of ``sizes`` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """An MLP autoencoder F -> hidden -> latent (tanh) -> hidden -> F whose output is bounded to the range
    of the typical training rows (``low``..``high``, set by :meth:`set_range`).

    The bounded code and output are what make reconstruction error see rows far out in one column: an
    unbounded ReLU decoder extrapolates linearly and rebuilds such a row well; this one cannot reach it,
    so the error grows with the distance outside the typical range (as well as off the learned manifold).
    """

    def __init__(self, num_features: int, hidden: int = 64, latent: int = 0) -> None:
        super().__init__()
        latent = latent or max(2, round(num_features / 2))
        self.encoder = _mlp([num_features, hidden, latent])
        self.decoder = _mlp([latent, hidden, num_features])
        self.register_buffer("low", torch.full((num_features,), -4.0))
        self.register_buffer("high", torch.full((num_features,), 4.0))

    @torch.no_grad()
    def set_range(self, z: torch.Tensor, quantile: float = 0.005, margin: float = 0.05) -> None:
        """The output range: the ``quantile`` and ``1 - quantile`` of each (scaled) column, widened by
        ``margin`` of their distance (at most 200k rows are looked at)."""
        sample = z[torch.randperm(len(z), generator=torch.Generator().manual_seed(0))[:200_000]].float()
        q = torch.quantile(sample, torch.tensor([quantile, 1 - quantile]), dim=0)
        pad = margin * (q[1] - q[0]) + 1e-3
        self.low.copy_(q[0] - pad)
        self.high.copy_(q[1] + pad)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        code = torch.tanh(self.encoder(z))  # (N, latent), in (-1, 1)
        return self.low + (self.high - self.low) * torch.sigmoid(self.decoder(code))  # (N, F)


class DeepSVDD(nn.Module):
    """Deep SVDD (Ruff et al. 2018): a bias-free MLP maps rows near a fixed centre ``c``; the squared
    distance to it is the score. No biases and no bounded activations, so the map cannot collapse every
    row onto ``c`` (the paper's "hypersphere collapse"); ``c`` is the mean initial embedding."""

    def __init__(self, num_features: int, hidden: int = 64, latent: int = 0) -> None:
        super().__init__()
        latent = latent or max(2, round(num_features / 2))
        self.net = _mlp([num_features, hidden, latent], bias=False)
        self.register_buffer("center", torch.zeros(latent))

    @torch.no_grad()
    def set_center(self, z: torch.Tensor, eps: float = 0.1) -> None:
        """The centre: the mean embedding of ``z`` before training, no coordinate nearer 0 than ``eps``
        (the paper's fix: a zero coordinate is trivially matched by zero weights)."""
        c = torch.cat([self.net(b) for b in z.split(65_536)]).mean(0)
        c = torch.where(c.abs() < eps, torch.where(c < 0, -eps, eps), c)
        self.center.copy_(c)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return ((self.net(z) - self.center) ** 2).sum(1)  # (N,)


class MLPClassifier(nn.Module):
    """F -> hidden -> hidden -> 1 fraud logit, with dropout (``hidden=0``: logistic regression)."""

    def __init__(self, num_features: int, hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        if hidden:
            self.net = nn.Sequential(
                nn.Linear(num_features, hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, 1),
            )
        else:
            self.net = nn.Sequential(nn.Linear(num_features, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(1)  # (N,) logits


def build_net(spec: dict[str, Any]) -> nn.Module:
    """The untrained network of ``spec`` (``{"model", "num_features", "hidden", "latent", "dropout"}``)."""
    kind, f = spec["model"], spec["num_features"]
    if kind == "autoencoder":
        return Autoencoder(f, spec["hidden"], spec["latent"])
    if kind == "deep_svdd":
        return DeepSVDD(f, spec["hidden"], spec["latent"])
    if kind == "mlp":
        return MLPClassifier(f, spec["hidden"], spec.get("dropout", 0.0))
    if kind == "logistic":
        return MLPClassifier(f, 0)
    raise ValueError(f"unknown model {kind!r}: one of {', '.join(MODELS)}")


class FraudScorer(nn.Module):
    """Raw features (N, F) -> scores (N,), higher = more suspicious.

    - ``reconstruction`` (autoencoder): the mean squared error over the scaled columns;
    - ``distance`` (Deep SVDD): the squared distance to the centre;
    - ``probability`` (MLP, logistic regression): the sigmoid of the fraud logit, P(fraud).

    The unsupervised scores are divided by their median on the training rows (``score_scale``), so a
    score of 1 is a typical row and 10 one ten times as unusual, whatever the data.
    """

    def __init__(self, preprocess: Preprocess, net: nn.Module, kind: str) -> None:
        super().__init__()
        if kind not in ("reconstruction", "distance", "probability"):
            raise ValueError(f"unknown score {kind!r}")
        self.preprocess, self.net, self.kind = preprocess, net, kind
        self.register_buffer("score_scale", torch.ones(()))

    def raw(self, z: torch.Tensor) -> torch.Tensor:
        """The unnormalised score of scaled rows ``z``."""
        out = self.net(z)
        if self.kind == "reconstruction":
            return ((out - z) ** 2).mean(1)
        if self.kind == "probability":
            return torch.sigmoid(out)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.raw(self.preprocess(x)) / self.score_scale


def score_kind(model: str) -> str:
    return {"autoencoder": "reconstruction", "deep_svdd": "distance"}.get(model, "probability")


def trimmed_mean(values: torch.Tensor, trim: float) -> torch.Tensor:
    """The mean of the ``1 - trim`` smallest values: the rows a model fits worst in a batch (likely the
    anomalies hidden in unlabelled training data) do not pull it towards them."""
    if trim <= 0:
        return values.mean()
    keep = max(1, int(len(values) * (1 - trim)))
    return values.topk(keep, largest=False).values.mean()


def focal_loss(
    logits: torch.Tensor, y: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) for binary labels: cross-entropy scaled by (1 - p_t)^gamma, so the
    many easy normal rows count little; ``alpha`` weighs the positive class (their RetinaNet default)."""
    ce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    p_t = torch.exp(-ce)
    weight = torch.where(y > 0.5, alpha, 1 - alpha)
    return (weight * (1 - p_t) ** gamma * ce).mean()
