# %% [markdown]
# # 04 · Attention and transformers, by hand and from scratch
#
# Attention lets every position of a sequence look at every other one and take what it needs, in one
# step, where a recurrent network passes its memory along one word at a time. We write attention in a
# few lines, check it against PyTorch, build a small transformer encoder that classifies IMDB reviews
# from a [CLS] token, train it from scratch and look at what it attends to. Lesson 05 then fine-tunes a
# pretrained transformer on the same task.
#
# **What you will learn**
# - scaled dot-product attention, softmax(Q K^T / sqrt(d) + mask) V, equal to
#   `F.scaled_dot_product_attention` in float64 with no mask, a padding mask, a causal mask and an
#   additive float mask; multi-head attention equal to `nn.MultiheadAttention`;
# - positional encodings: fixed sinusoids, or learned vectors;
# - a pre-norm transformer encoder classifier with a [CLS] token and a padding mask, trained with
#   AdamW, warmup and linear decay; and what its [CLS] attends to.

# %%
from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import TensorDataset

from dlkit.config import flag
from dlkit.data import load_dataset, synthetic_reviews
from dlkit.device import resolve_amp_dtype, seed_everything
from dlkit.lesson import Lesson, LessonConfig
from dlkit.metrics import accuracy_of
from dlkit.text import Vocab, pad_batch, tokenize
from dlkit.train import fit, make_loader


@dataclass
class Config(LessonConfig):
    num_train: int = flag(1_000, help="training reviews: few, as labelled sets often are", min=2)
    num_test: int = flag(1_000, help="test reviews", min=2)
    max_len: int = flag(128, help="words per review the model reads", min=4, max=4096)
    d_model: int = flag(
        64, help="width of the model (embeddings, attention, residual stream)", min=4, max=4096
    )
    num_heads: int = flag(4, help="attention heads (d_model must be a multiple)", min=1, max=64)
    num_layers: int = flag(2, help="encoder blocks", min=1, max=48)
    dropout: float = 0.1
    batch_size: int = 32
    num_epochs: int = flag(10, help="epochs: a small model, so it gets many", min=1, max=500)
    positions: str = flag("learned", help="positional encodings", choices=("learned", "sinusoidal"))
    lr: float = flag(1e-3, help="AdamW's peak learning rate", above=0, max=1)
    warmup: float = flag(0.1, help="share of the steps with a linearly rising learning rate", min=0, max=0.5)


QUICK = {"num_train": 400, "num_test": 200, "max_len": 64, "d_model": 32, "num_epochs": 4}
lesson = Lesson("nlp/04_attention_transformers", Config, quick=QUICK)
cfg, device, full = lesson.cfg, lesson.device, not lesson.quick
amp_dtype = resolve_amp_dtype(None, device)  # bf16 where it pays: a recent GPU, or a CPU with native bf16

# %% [markdown]
# ## Scaled dot-product attention, by hand
#
# Each query vector is compared with every key vector by a dot product; dividing by sqrt(d) keeps the
# scores' spread independent of the dimension d (Vaswani et al., 2017), so that the softmax does not
# saturate. The softmax turns a query's scores into weights that sum to 1, and the output is that
# weighted mean of the values. A mask removes some keys: a boolean one (True = may attend, PyTorch's
# convention) sets their score to -inf, a float one is added to the scores.


# %%
def attention(q, k, v, mask=None, is_causal=False):
    """q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv) -> output (..., Tq, dv), weights (..., Tq, Tk)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., Tq, Tk)
    if is_causal:  # position i sees positions 0..i only
        mask = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).tril()
    if mask is not None and mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask is not None:
        scores = scores + mask
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def sdpa_max_diff(case: str, B: int = 2, h: int = 3, T: int = 7, d: int = 8, seed: int = 0) -> float:
    """Largest |ours - F.scaled_dot_product_attention| over outputs and q, k, v gradients, in float64."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, h, T, d, generator=g, dtype=torch.float64, requires_grad=True) for _ in "qkv")
    mask = torch.randn(B, h, T, T, generator=g, dtype=torch.float64) if case == "additive" else None
    if case == "padding":  # the second sequence ends with 3 padding positions; True = a key to attend to
        mask = (torch.arange(T) < torch.tensor([T, T - 3])[:, None])[:, None, None, :]  # (B, 1, 1, Tk)
    ours, _ = attention(q, k, v, mask, is_causal=case == "causal")
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=case == "causal")
    w = torch.randn(ours.shape, generator=g, dtype=torch.float64)  # any scalar of the outputs
    grads = [torch.autograd.grad((out * w).sum(), (q, k, v)) for out in (ours, theirs)]
    diffs = [(ours - theirs).abs().max()] + [(a - b).abs().max() for a, b in zip(*grads, strict=True)]
    return max(diff.item() for diff in diffs)


sdpa_diffs = {case: sdpa_max_diff(case) for case in ("none", "padding", "causal", "additive")}
print("max |ours - F.scaled_dot_product_attention|:", {c: f"{d:.1e}" for c, d in sdpa_diffs.items()})

# %% [markdown]
# What to notice: the differences are rounding errors (about 1e-16), outputs and gradients alike. The
# fused PyTorch function computes the same thing without ever storing the T x T weights (on a GPU, a
# FlashAttention kernel), so we use it for training and ours when we want to see the weights.
#
# ## Multi-head attention
#
# One projection makes queries, keys and values from the same input; `num_heads` heads each attend in
# their own d_model / num_heads dimensions (one head may follow negations, another the sentiment
# words), and a last projection mixes the heads. A key padding mask (True = padding, as
# `nn.MultiheadAttention` wants it) keeps every query away from the padding.


# %%
class MultiHeadAttention(nn.Module):
    """Self-attention: x (B, T, D) -> (B, T, D), and the weights (B, h, T, T) when asked for."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.in_proj = nn.Linear(d_model, 3 * d_model)  # queries, keys, values in one matrix product
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x, key_padding_mask=None, need_weights=False):
        B, T, D = x.shape
        q, k, v = self.in_proj(x).chunk(3, dim=-1)  # 3 x (B, T, D)
        q, k, v = (t.view(B, T, self.num_heads, D // self.num_heads).transpose(1, 2) for t in (q, k, v))
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]  # (B, 1, 1, T)
        if need_weights:
            y, weights = attention(q, k, v, mask)  # (B, h, T, hs), (B, h, T, T)
        else:  # the fused kernel: same result, faster, less memory
            y, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=mask), None
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D)), weights


def mha_max_diff(B: int = 3, T: int = 6, D: int = 12, h: int = 3, seed: int = 0) -> float:
    """Largest |ours - nn.MultiheadAttention| over outputs and per-head weights, in float64."""
    torch.manual_seed(seed)
    theirs = nn.MultiheadAttention(D, h, batch_first=True, dtype=torch.float64)
    ours = MultiHeadAttention(D, h).double()
    with torch.no_grad():  # the same weights: PyTorch also stacks W_q, W_k, W_v in one in_proj
        ours.in_proj.weight.copy_(theirs.in_proj_weight), ours.in_proj.bias.copy_(theirs.in_proj_bias)
        ours.out_proj.load_state_dict(theirs.out_proj.state_dict())
    x = torch.randn(B, T, D, dtype=torch.float64)
    padding = torch.arange(T) >= torch.tensor([T, T - 2, 1])[:, None]  # (B, T), True = padding
    y, w = theirs(x, x, x, key_padding_mask=padding, need_weights=True, average_attn_weights=False)
    our_y, our_w = ours(x, padding, need_weights=True)
    fused_y, _ = ours(x, padding)
    return max(diff.abs().max().item() for diff in (y - our_y, w - our_w, y - fused_y))


mha_diff = mha_max_diff()
print(f"max |ours - nn.MultiheadAttention| = {mha_diff:.1e}")

# %% [markdown]
# ## Positional encodings
#
# Attention is blind to order: shuffle the words and every output is shuffled the same way, nothing
# more. So a transformer adds a position vector to each word vector. The original one is fixed:
# sines and cosines of the position at wavelengths from 2 pi to 10,000 x 2 pi, so that nearby
# positions get similar vectors. BERT instead learns one vector per position, like a word embedding.


# %%
def sinusoidal_positions(num_positions: int, d_model: int) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...): (num_positions, d_model)."""
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]  # (P, 1)
    frequency = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10_000.0) / d_model))  # (d/2,)
    pe = torch.zeros(num_positions, d_model)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)
    return pe


def cosine_similarities(pe: torch.Tensor) -> torch.Tensor:
    pe = F.normalize(pe, dim=1)
    return pe @ pe.T  # (P, P)


# %% [markdown]
# ## The data: IMDB reviews, few of them
#
# 1,000 training reviews (stratified: half positive) and 1,000 test reviews. Few on purpose: a
# labelled set this small is common in practice, and it is where lesson 05's pretrained model shines.
# Quick mode uses SYNTHETIC reviews (filler words and a few sentiment words,
# `dlkit.data.synthetic_reviews`), and says so: in seconds of training a transformer learns nothing
# from a few hundred real reviews, but it does learn which synthetic words carry the sentiment.

# %%
if full:  # downloads IMDB when it is not on the machine
    train = load_dataset("imdb", "train").subset(cfg.num_train, seed=cfg.seed)
    test = load_dataset("imdb", "test").subset(cfg.num_test, seed=cfg.seed)
else:
    print("quick mode: SYNTHETIC reviews (a transformer learns nothing from real ones in seconds)")
    train, test = synthetic_reviews(cfg.num_train, cfg.seed), synthetic_reviews(cfg.num_test, cfg.seed + 1)
lesson.uses_data("reviews", f"train: {train.source}; test: {test.source}")
vocab = Vocab.build((tokenize(t) for t in train.texts), min_freq=2, max_size=20_000)
X_train, _ = pad_batch([vocab.encode(tokenize(t)) for t in train.texts], max_len=cfg.max_len)  # (N, T)
X_test, _ = pad_batch([vocab.encode(tokenize(t)) for t in test.texts], max_len=cfg.max_len)
print(
    f"{len(vocab):,} words seen twice or more; X_train {tuple(X_train.shape)}, X_test {tuple(X_test.shape)}"
)

# %% [markdown]
# ## A transformer encoder classifier, from scratch
#
# A [CLS] vector, learned, goes in front of every review; after the encoder blocks it has attended to
# every word, and a linear head reads the class from it alone. Each block is pre-norm, as in GPT-2 and
# most current models (the residual path stays clean, so deep stacks train stably): x + attention(norm(x)),
# then x + MLP(norm(x)).
# Padding ids (0) become a key padding mask, so that no position attends to padding; [CLS] is never
# padding.


# %%
class EncoderBlock(nn.Module):
    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn, self.dropout = MultiHeadAttention(d_model, num_heads), nn.Dropout(dropout)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model), nn.Dropout(dropout)
        )

    def forward(self, x, key_padding_mask, need_weights=False):
        a, weights = self.attn(self.norm1(x), key_padding_mask, need_weights)  # (B, T, D)
        x = x + self.dropout(a)
        return x + self.mlp(self.norm2(x)), weights


class TransformerClassifier(nn.Module):
    """Word ids (B, T), 0 = padding -> (B, num_classes) logits, read from the [CLS] position."""

    def __init__(self, vocab_size: int, num_classes: int, c: Config, positions: str = "learned") -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, c.d_model, padding_idx=0)
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, c.d_model))
        pe = sinusoidal_positions(c.max_len + 1, c.d_model)[None]  # (1, 1 + max_len, D)
        self.pos = nn.Parameter(0.02 * torch.randn_like(pe)) if positions == "learned" else nn.Buffer(pe)
        self.blocks = nn.ModuleList(
            EncoderBlock(c.d_model, c.num_heads, c.dropout) for _ in range(c.num_layers)
        )
        self.norm, self.head = nn.LayerNorm(c.d_model), nn.Linear(c.d_model, num_classes)

    def forward(self, ids, return_weights=False):
        B, T = ids.shape
        padding = torch.cat([torch.zeros(B, 1, dtype=torch.bool, device=ids.device), ids == 0], dim=1)
        x = torch.cat([self.cls.expand(B, -1, -1), self.embed(ids)], dim=1) + self.pos[:, : T + 1]
        all_weights = []  # per block: (B, h, 1 + T, 1 + T)
        for block in self.blocks:
            x, weights = block(x, padding, need_weights=return_weights)  # (B, 1 + T, D)
            all_weights.append(weights)
        logits = self.head(self.norm(x[:, 0]))  # only [CLS] is read
        return (logits, all_weights) if return_weights else logits


# %% [markdown]
# Training uses AdamW with a learning rate that rises linearly for the first 10% of the steps (the
# warmup: Adam's early steps are noisy, and attention is sensitive to them) and then falls linearly to
# zero, the schedule of BERT.


# %%
def warmup_then_linear(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float) -> LambdaLR:
    """lr factor (step + 1) / warmup_steps for the first steps, then a straight line down to 0."""
    warmup_steps = max(1, round(warmup * total_steps))
    decay_steps = total_steps - warmup_steps + 1e-9
    return LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup_steps, (total_steps - step) / decay_steps)
    )


seed_everything(cfg.seed)
model = TransformerClassifier(len(vocab), len(train.classes), cfg, cfg.positions)
print(f"{sum(p.numel() for p in model.parameters()):,} parameters, {cfg.positions} positions")
optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
loader = make_loader(TensorDataset(X_train, train.labels), cfg.batch_size, shuffle=True)
scheduler = warmup_then_linear(optimizer, cfg.num_epochs * len(loader), cfg.warmup)
history = fit(model, optimizer, loader, loss_fn=F.cross_entropy, num_epochs=cfg.num_epochs, device=device,
              scheduler=scheduler, scheduler_interval="batch", clip_grad_norm=1.0)  # fmt: skip
train_acc = history.last["train_acc"]
test_acc = accuracy_of(model, X_test, test.labels, batch_size=256, amp_dtype=amp_dtype)
print(f"from scratch: training accuracy {train_acc:.3f} (last epoch), test accuracy {test_acc:.3f}")

# %% [markdown]
# What to notice: in full mode the training accuracy climbs towards 100% while the test accuracy stays
# far lower: 1,000 reviews are too few to learn what 10,000 words mean, let alone how they combine. The
# figure shows why sinusoids are a good prior: nearby positions are similar, by construction; learned
# positions, trained on 1,000 reviews, barely move from their random start (`--positions sinusoidal`
# trains with the fixed ones instead: try it).

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
sinusoids = sinusoidal_positions(cfg.max_len + 1, cfg.d_model)  # (1 + max_len, D)
axes[0].imshow(sinusoids.T, aspect="auto", cmap="RdBu")
axes[0].set(title="sinusoidal encodings", xlabel="position", ylabel="dimension")
panels = {"sinusoidal": sinusoids, f"the model's {cfg.positions}": model.pos[0]}
for ax, (name, pe) in zip(axes[1:], panels.items(), strict=True):
    ax.imshow(cosine_similarities(pe.detach().float().cpu()), cmap="viridis", vmin=-1, vmax=1)
    ax.set(title=f"{name}: cosine similarity", xlabel="position", ylabel="position")
lesson.savefig(fig, "positional_encodings")

# %% [markdown]
# ## What does [CLS] attend to?
#
# The weights of the last block's [CLS] row say how much of each word went into the vector that the
# head reads, one row per head, on a short test review.

# %%
review = min((t for t in test.texts if len(tokenize(t)) >= 25), key=lambda t: len(tokenize(t)))
tokens = tokenize(review)[: cfg.max_len]
ids = torch.tensor([vocab.encode(tokens)], device=device)  # (1, T)
model.eval()
with torch.no_grad():
    logits, weights = model(ids, return_weights=True)
cls_row = weights[-1][0, :, 0].float().cpu()  # (h, 1 + T): [CLS]'s weights over [CLS] and the words
p_pos = logits.softmax(dim=1)[0, 1].item()
print(f"review: {review[:300]}\np(pos) = {p_pos:.2f}; top words:",
      [tokens[i - 1] for i in cls_row[:, 1:].mean(0).topk(6).indices.add(1).tolist()])  # fmt: skip
fig, ax = plt.subplots(figsize=(min(22, 1 + 0.3 * len(tokens)), 2.2))
ax.imshow(cls_row, aspect="auto", cmap="Blues")
ax.set_xticks(range(len(tokens) + 1), ["[CLS]", *tokens], rotation=90, fontsize=8)
ax.set(ylabel="head", title=f"[CLS] attention, last block (p(pos) = {p_pos:.2f})")
lesson.savefig(fig, "cls_attention")

# %% [markdown]
# What to notice: some heads pick out a few words (on a negative review, the sentiment words), others
# spread out evenly: an average of the review. Attention weights hint at what the model uses; they are
# not an explanation (Jain and Wallace, 2019): the values they weigh have been mixed across positions
# by earlier blocks.
#
# ## What you measured
#
# Our attention and multi-head attention equal PyTorch's (float64, outputs and gradients, every kind
# of mask); the from-scratch transformer's training and test accuracy on 1,000 reviews (full mode).
# Lesson 05 fine-tunes a pretrained transformer on the same reviews and sees how much further it gets.

# %%
for case, diff in sdpa_diffs.items():
    lesson.record(f"sdpa_max_diff_{case}", diff, max=1e-6)
lesson.record("mha_max_diff", mha_diff, max=1e-6)
lesson.record("train_acc", train_acc, min=0.9 if full else 0.7, chance=0.5)  # it fits its reviews
lesson.record("test_acc", test_acc, min=0.6 if full else 0.75, chance=0.5)
lesson.finish()

# %% [markdown]
# ## Exercises
# Each cell below holds a stub: read its docstring, replace `raise NotImplementedError` with your
# code, then run the check cell at the end (or `dlkit check nlp/04` in a terminal). The checks compare
# your code with `F.scaled_dot_product_attention` and `nn.MultiheadAttention` in float64.

# %% tags=["exercise"]
import torch


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Add a causal mask to attention: q (..., Tq, d), k and v (..., Tk, d) -> output (..., Tq, d).

    Tq <= Tk: the queries are the LAST Tq positions of the Tk (as when a decoder with a cache of
    keys and values reads a few new tokens): query i is position Tk - Tq + i, and sees the keys up to
    that position only. Mask the scores with -inf before the softmax (`torch.tril` takes a
    `diagonal`). For Tq = Tk this is `F.scaled_dot_product_attention(..., is_causal=True)`.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def decoder_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """Build a decoder's attention mask for a right-padded batch: lengths (B,) -> bool (B, 1, T, T).

    For `F.scaled_dot_product_attention`: True where query i may attend to key j. Both rules at
    once: causal (j <= i), and key j is a real token (j < lengths[b]). Rows of padding queries stay
    (they are thrown away later), but every row must keep a True, or its softmax is NaN.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch
import torch.nn.functional as F


def cross_attention(x, memory, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, num_heads):
    """Write multi-head cross-attention: x (B, Tq, D) attends to memory (B, Tk, D) -> (B, Tq, D).

    Queries come from x, keys and values from memory: the first output of
    `nn.MultiheadAttention(D, num_heads, batch_first=True)(x, memory, memory)`. in_proj_weight (3D, D)
    stacks W_q, W_k, W_v (rows), in_proj_bias (3D,) their biases. Split q, k and v into heads,
    (B, T, D) -> (B, num_heads, T, D // num_heads), attend per head, merge the heads back into
    (B, Tq, D), then the output projection (`F.linear(y, W, b)` is y @ W.T + b).
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
