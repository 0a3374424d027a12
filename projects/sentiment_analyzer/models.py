"""The three sentiment models; each maps the tensors its featurizer makes to logits (B, 2) (neg, pos).

- ``nbsvm``: from scratch, NBSVM-style (Wang & Manning 2012). A weight per 1-, 2- and 3-gram, scaled by
  the n-gram's naive-Bayes log-count ratio r, on binarized n-grams: z = sum_i (w_i + w_adj) r_i / r_adj
  + b. With w = 0 this is naive Bayes itself; training learns how much to trust each ratio (the
  parametrisation of fast.ai's "NBSVM++", which beat NBSVM's own interpolation). An
  ``nn.EmbeddingBag``-style sum over the n-grams, trained with AdamW in seconds per epoch on a CPU.
- ``baseline``: scikit-learn's TF-IDF (1-2-grams, sublinear tf, l2 norm) + logistic regression, trained
  by scikit-learn and then held as tensors here (vocabulary, idf, coefficients), so a release loads
  without pickle and runs like the other models.
- ``minilm``: all-MiniLM-L6-v2 (a 6-layer BERT, 22.7M parameters), mean-pooled, with a linear head;
  fine-tuned whole.

Logits are (-z/2, z/2), so softmax gives p(pos) = sigmoid(z) and cross-entropy is the logistic loss.

``nbsvm`` and ``baseline`` are linear in their features, so z splits exactly into one contribution per
n-gram of the text plus a bias (:meth:`NBLinear.contributions`, :meth:`TfidfLogistic.contributions`):
that is what predict and the page show as the words that pushed the decision. MiniLM has no such
exact split, and nothing pretends it does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MODELS", "MiniLMClassifier", "NBLinear", "TfidfLogistic", "build_from_info", "build_model"]
__all__ += ["load_run", "two_logits"]

MODELS = ("nbsvm", "baseline", "minilm")


def two_logits(z: torch.Tensor) -> torch.Tensor:
    """A binary score z (B,) as two class logits (B, 2) whose softmax is (1 - sigmoid(z), sigmoid(z))."""
    return torch.stack([-z / 2, z / 2], dim=1)


class NBLinear(nn.Module):
    """z = sum over the text's distinct n-grams i of (w_i + w_adj) * r_i / r_adj, plus b.

    ``ratios`` (r) is a buffer, not trained; id 0 is padding, whose ratio is 0, so it adds nothing.
    """

    def __init__(self, vocab_size: int, w_adj: float = 0.4, r_adj: float = 10.0) -> None:
        super().__init__()
        self.w_adj, self.r_adj = w_adj, r_adj
        self.weight = nn.Parameter(torch.zeros(vocab_size))  # (V,)
        self.bias = nn.Parameter(torch.zeros(1))
        self.register_buffer("ratios", torch.zeros(vocab_size))  # (V,)

    def set_ratios(self, ratios: torch.Tensor) -> None:
        self.ratios.copy_(ratios)
        self.ratios[0] = 0.0  # padding carries no evidence

    def score_flat(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """z (B,) for the concatenated id lists ``ids`` (N,) of B texts starting at ``offsets`` (B,):
        no padding, the fast path for training."""
        table = (self.weight + self.w_adj).unsqueeze(1)  # (V, 1)
        scale = self.ratios[ids] / self.r_adj  # (N,)
        z = F.embedding_bag(ids, table, offsets, mode="sum", per_sample_weights=scale)  # (B, 1)
        return z.squeeze(1) + self.bias

    def contributions(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each n-gram's share of z for padded ``ids`` (B, T) (0 for padding), and the bias (1,):
        z = contributions.sum(1) + bias exactly."""
        return (self.weight[ids] + self.w_adj) * self.ratios[ids] / self.r_adj, self.bias

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, 2) of padded id lists ``ids`` (B, T) (0 = padding), or of flat ``ids`` (N,)
        starting at ``offsets`` (B,) (training's input, see :meth:`score_flat`)."""
        if offsets is not None:
            return two_logits(self.score_flat(ids, offsets))
        return two_logits(self.contributions(ids)[0].sum(dim=1) + self.bias)


class TfidfLogistic(nn.Module):
    """scikit-learn's TfidfVectorizer(sublinear_tf, norm="l2") + LogisticRegression, as tensors.

    Inputs: the distinct n-gram ids (B, T) of each text (0 = padding) and their counts (B, T).
    """

    def __init__(self, vocab_size: int, sublinear_tf: bool = True) -> None:
        super().__init__()
        self.sublinear_tf = sublinear_tf
        self.register_buffer("idf", torch.zeros(vocab_size))  # (V,), idf[0] = 0 for padding
        self.register_buffer("coef", torch.zeros(vocab_size))  # (V,)
        self.register_buffer("intercept", torch.zeros(1))

    def contributions(self, ids: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each n-gram's share of z (B, T): its coefficient times its tf-idf value; and the intercept."""
        tf = torch.where(counts > 0, 1 + counts.clamp_min(1).log(), 0.0) if self.sublinear_tf else counts
        x = tf * self.idf[ids]  # (B, T) tf-idf of each n-gram present
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)  # l2-normalised rows, as sklearn
        return x * self.coef[ids], self.intercept

    def forward(self, ids: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        shares, intercept = self.contributions(ids, counts)
        return two_logits(shares.sum(dim=1) + intercept)


class MiniLMClassifier(nn.Module):
    """A BERT encoder, mean pooling over the real tokens, dropout and a linear head to 2 classes."""

    def __init__(
        self, encoder: nn.Module, hidden_size: int = 384, dropout: float = 0.1, pad_id: int = 0
    ) -> None:
        super().__init__()
        self.encoder, self.pad_id = encoder, pad_id
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2) of token ids (B, T), right-padded with ``pad_id``."""
        mask = (ids != self.pad_id).long()  # (B, T)
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, H)
        weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1)  # (B, H)
        return self.head(self.dropout(pooled)).float()


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """The untrained architecture ``name`` (weights come from a checkpoint or a release).

    ``minilm`` takes ``encoder_config`` (the BERT config as a dict) and builds the encoder from it;
    training loads the pretrained weights instead (see train.py).
    """
    if name == "nbsvm":
        return NBLinear(kwargs["vocab_size"], kwargs.get("w_adj", 0.4), kwargs.get("r_adj", 10.0))
    if name == "baseline":
        return TfidfLogistic(kwargs["vocab_size"], kwargs.get("sublinear_tf", True))
    if name == "minilm":
        from transformers import BertConfig, BertModel

        encoder = BertModel(BertConfig.from_dict(kwargs["encoder_config"]), add_pooling_layer=False)
        return MiniLMClassifier(encoder, kwargs.get("hidden_size", 384), kwargs.get("dropout", 0.1))
    raise ValueError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")


def build_from_info(info: dict[str, Any]) -> nn.Module:
    """The untrained architecture that a run's model_info.json (or a release's model.json) names."""
    arch = info["architecture"]
    return build_model(arch["name"], **arch["kwargs"])


def load_run(
    run_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """The trained model of a run folder (eval mode, on ``device``; the kept best weights), its
    featurizer and model_info.json."""
    from dlkit.runs import load_trained
    from projects.sentiment_analyzer.features import load_featurizer

    model, info = load_trained(run_dir, build_from_info, device)
    return model, load_featurizer(info["architecture"]["name"], Path(run_dir), info), info
