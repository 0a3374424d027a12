# %% [markdown]
# # 03 · Sequence models: RNN, LSTM, GRU, and a character language model
#
# A recurrent network reads a sequence one step at a time, carrying a hidden state (its memory) from
# each step to the next. We write the cells by hand and train an LSTM that writes Shakespeare-like text.
#
# **What you will learn**
# - the RNN, LSTM and GRU cells as a few lines of tensor code, equal to `nn.RNN`, `nn.LSTM`, `nn.GRU`;
# - packed sequences; exploding and vanishing gradients over long sequences, and gradient clipping;
# - a character-level LSTM language model trained with truncated backpropagation through time, its
#   validation loss in nats per character, and sampling with a temperature and top-k.

# %%
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from dlkit.config import flag
from dlkit.data import bundled_sonnets, load_dataset, locate
from dlkit.device import autocast, resolve_amp_dtype
from dlkit.lesson import Lesson, LessonConfig, exactly
from dlkit.plots import plot_curves
from dlkit.progress import progress
from dlkit.text import CharVocab, pad_batch


@dataclass
class Config(LessonConfig):
    text_chars: int = flag(0, help="use only the first text_chars characters of the text (0: all)", min=0)
    embed_dim: int = flag(64, help="size of each character's embedding", min=1, max=4096)
    hidden_size: int = flag(256, help="units of the LSTM", min=1, max=8192)
    num_layers: int = flag(1, help="stacked LSTM layers", min=1, max=16)
    seq_len: int = flag(64, help="truncated BPTT: gradients flow back at most seq_len characters", min=2)
    batch_size: int = 64
    num_steps: int = flag(2_000, help="optimizer steps", min=1)
    lr: float = flag(3e-3, help="AdamW's learning rate (cosine decay to a tenth)", above=0, max=1)
    max_norm: float = flag(1.0, help="gradient clipping: the largest L2 norm of all gradients", above=0)
    eval_every: int = flag(200, help="steps between validation estimates", min=1)
    eval_chars: int = flag(20_000, help="validation characters scored while training (all at the end)", min=9)
    sample_len: int = flag(400, help="characters sampled from the trained model", min=1, max=100_000)
    top_k: int = 5


QUICK = {"text_chars": 150_000, "hidden_size": 128, "batch_size": 32, "num_steps": 300}
QUICK |= {"eval_every": 50, "eval_chars": 5_000, "sample_len": 200}
lesson = Lesson("nlp/03_sequence_models", Config, quick=QUICK)
cfg, device, full = lesson.cfg, lesson.device, not lesson.quick

# %% [markdown]
# ## The cells, by hand
#
# An RNN cell mixes the input $x_t$ and the previous state: $h_t = \tanh(x_t W_{ih}^T + b_{ih} +
# h_{t-1} W_{hh}^T + b_{hh})$, the same weights at every step (`unroll` runs a cell along time). The
# LSTM adds a cell state $c_t$ and four gates (input, forget, candidate, output); the GRU has three.


# %%
def rnn_cell(x, h, W_ih, W_hh, b_ih, b_hh):
    """x (B, D), h (B, H) -> the next h (B, H)."""
    return torch.tanh(x @ W_ih.T + b_ih + h @ W_hh.T + b_hh)


def lstm_cell(x, state, W_ih, W_hh, b_ih, b_hh):
    """x (B, D), state (h, c) each (B, H) -> the next (h, c)."""
    h, c = state
    i, f, g, o = (x @ W_ih.T + b_ih + h @ W_hh.T + b_hh).chunk(4, dim=1)  # 4 x (B, H)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # forget some, write some
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_cell(x, h, W_ih, W_hh, b_ih, b_hh):
    """x (B, D), h (B, H) -> the next h (B, H)."""
    x_r, x_z, x_n = (x @ W_ih.T + b_ih).chunk(3, dim=1)  # 3 x (B, H)
    h_r, h_z, h_n = (h @ W_hh.T + b_hh).chunk(3, dim=1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)  # the reset gate decides how much of the past the candidate sees
    return (1 - z) * n + z * h  # the update gate interpolates between the old state and the new


def unroll(cell: Callable, x: torch.Tensor, state, weights):
    """Run ``cell`` over x (B, T, D): outputs (B, T, H) and the final state."""
    outputs = []
    for t in range(x.shape[1]):
        state = cell(x[:, t], state, *weights)
        outputs.append(state[0] if isinstance(state, tuple) else state)  # an LSTM outputs h, not c
    return torch.stack(outputs, dim=1), state


def max_diff_vs_torch(kind: str, seed: int = 0, B: int = 3, T: int = 6, D: int = 5, H: int = 7) -> float:
    """Largest |ours - PyTorch| over outputs, final states and all gradients, in float64."""
    torch.manual_seed(seed)
    module = getattr(nn, kind)(D, H, batch_first=True, dtype=torch.float64)
    cell = {"RNN": rnn_cell, "LSTM": lstm_cell, "GRU": gru_cell}[kind]
    x = torch.randn(B, T, D, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, B, H, dtype=torch.float64)  # (num_layers, B, H), as nn.RNN wants it
    state = (h0, torch.randn_like(h0)) if kind == "LSTM" else h0
    out, final = module(x, state)
    weights = [module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0, module.bias_hh_l0]
    our_out, our_final = unroll(cell, x, tuple(s[0] for s in state) if kind == "LSTM" else h0[0], weights)
    ours = [our_out, *(our_final if kind == "LSTM" else [our_final])]
    theirs = [out, *(s[0] for s in (final if kind == "LSTM" else [final]))]
    w = torch.linspace(-1, 1, H, dtype=torch.float64)  # any scalar function of the outputs will do
    ours += torch.autograd.grad((our_out * w).sum(), [x, *weights])
    theirs += torch.autograd.grad((out * w).sum(), [x, *weights])
    return max((a - b).abs().max().item() for a, b in zip(ours, theirs, strict=True))


cell_diffs = {kind: max_diff_vs_torch(kind) for kind in ("RNN", "LSTM", "GRU")}
params = {kind: sum(p.numel() for p in getattr(nn, kind)(64, 256).parameters()) for kind in cell_diffs}
print({kind: f"max |ours - nn.{kind}| {diff:.1e}; {params[kind]:,} parameters for 64 -> 256"
       for kind, diff in cell_diffs.items()})  # fmt: skip

# %% [markdown]
# What to notice: the differences are rounding error: `nn.LSTM` computes exactly these formulas (fused,
# and on a GPU by cuDNN). The LSTM has four times the RNN's parameters, the GRU three: one per gate.
#
# ## Batches of different lengths: packed sequences
#
# A batch is padded to its longest sequence; an RNN that reads the padding changes its state, so a short
# sequence's "final" state is the one after the padding. `pack_padded_sequence` stops each at its end.


# %%
def packed_vs_alone(lengths: list[int], seed: int = 0) -> tuple[float, float]:
    """(max |packed - alone|, max |padded - alone|) over the final states (h, c) of an LSTM."""
    torch.manual_seed(seed)
    embed = nn.Embedding(10, 4, dtype=torch.float64)
    lstm = nn.LSTM(4, 6, batch_first=True, dtype=torch.float64)
    seqs = [torch.randint(1, 10, (n,)).tolist() for n in lengths]  # id 0 is padding
    ids, lens = pad_batch(seqs)  # (B, T), (B,)
    with torch.no_grad():
        alone = [lstm(embed(torch.tensor([s])))[1] for s in seqs]  # each sequence on its own
        h_alone, c_alone = (torch.cat(states, dim=1) for states in zip(*alone, strict=True))  # (1, B, H)
        packed = pack_padded_sequence(embed(ids), lens, batch_first=True, enforce_sorted=False)
        _, (h_packed, c_packed) = lstm(packed)  # the outputs, packed too: pad_packed_sequence unpacks them
        _, (h_padded, c_padded) = lstm(embed(ids))  # reads the padding too
    diff_packed = max((h_packed - h_alone).abs().max(), (c_packed - c_alone).abs().max())
    diff_padded = max((h_padded - h_alone).abs().max(), (c_padded - c_alone).abs().max())
    return diff_packed.item(), diff_padded.item()


packed_diff, padded_diff = packed_vs_alone([2, 7, 4])
print(f"final states vs each sequence alone, max diff: packed {packed_diff:.1e}, padded {padded_diff:.2f}")

# %% [markdown]
# What to notice: packed, the batch gives the states of the sequences run alone (to rounding);
# unpacked, the two shorter ones are far off: the padding leaked in (`enforce_sorted=False`: any order).
#
# ## Long sequences: vanishing and exploding gradients
#
# Backpropagation through T steps multiplies T Jacobians, each roughly $W_{hh}$ times the tanh slope:
# if they shrink vectors, the gradient reaching the first input vanishes; if they stretch them, it
# explodes. We scale $W_{hh}$ (orthogonal times a gain) and measure the first input's gradient.


# %%
def gradient_through_time(gain: float, T: int, seed: int = 0) -> tuple[float, nn.RNN]:
    """||dL/dx_0|| for an RNN whose W_hh is orthogonal * gain, L on the output at step T."""
    torch.manual_seed(seed)
    rnn = nn.RNN(8, 32, batch_first=True)
    with torch.no_grad():
        nn.init.orthogonal_(rnn.weight_hh_l0, gain=gain)
    x = torch.randn(16, T, 8, requires_grad=True)  # (B, T, D)
    out, _ = rnn(x)
    out[:, -1].pow(2).mean().backward()
    return x.grad[:, 0].norm().item(), rnn


GAINS, LENGTHS = (0.5, 1.0, 1.5, 3.0), (5, 10, 20, 40, 60, 80, 100)
grad_x0 = {g: [gradient_through_time(g, T)[0] for T in LENGTHS] for g in GAINS}
_, rnn = gradient_through_time(3.0, 100)
grad_norm_before = nn.utils.clip_grad_norm_(rnn.parameters(), max_norm=cfg.max_norm).item()
grad_norm_after = torch.cat([p.grad.flatten() for p in rnn.parameters()]).norm().item()
print(f"W_hh gain 3, 100 steps: gradient norm {grad_norm_before:.3g} -> {grad_norm_after:.3g} after clipping")

fig, ax = plt.subplots(figsize=(6, 3.5))
for g, norms in grad_x0.items():
    ax.plot(LENGTHS, [max(n, 1e-30) for n in norms], marker="o", label=f"W_hh gain {g}")
ax.set(yscale="log", xlabel="sequence length T", ylabel="||dL / dx_0||", title="gradient reaching step 0")
ax.legend()
lesson.savefig(fig, "gradient_vs_length")

# %% [markdown]
# What to notice: with a gain of 1 or less the first input's gradient shrinks by orders of magnitude
# as T grows: such an RNN cannot learn what happened 50 steps ago. With a gain of 3 it explodes, and
# one such update would throw the weights far away. `clip_grad_norm_` rescales all gradients together
# so that their norm is at most `max_norm`: the direction survives, the size does not. The LSTM's
# additive cell update $c_t = f \odot c_{t-1} + \dots$ lets gradients pass many steps.
#
# ## A character-level language model
#
# The data: tiny shakespeare (1.1 M characters of the plays), the first 90% for training, the rest
# for validation; quick mode uses its start when it is on disk, else three sonnets that ship with
# dlkit. The model reads characters and predicts the next one at every position.


# %%
if full or locate("tiny_shakespeare") is not None:  # only full mode may download it
    data_name, data = "tiny_shakespeare", load_dataset("tiny_shakespeare")
else:
    data_name, data = "sonnets", bundled_sonnets()
text, source = data.text[: cfg.text_chars or None], data.source
lesson.uses_data(data_name, f"{source}; {len(text):,} characters used")
vocab = CharVocab.from_text(text)  # every character of the text, so that validation text encodes
ids = vocab.encode_tensor(text)  # (N,): the first 90% to train on, the rest to validate
train_ids, val_ids = ids[: int(0.9 * len(ids))], ids[int(0.9 * len(ids)) :]
print(f"{len(vocab)} characters: {vocab.chars!r}\ntrain {len(train_ids):,}, validation {len(val_ids):,}")


# The unigram baseline ignores context: each character costs -log of its training frequency (+1 each).
counts = torch.bincount(train_ids, minlength=len(vocab)).double() + 1
baseline = -(counts / counts.sum()).log()[val_ids].mean().item()  # nats per validation character
print(f"unigram baseline: {baseline:.3f} nats/char (uniform: ln {len(vocab)} = {math.log(len(vocab)):.3f})")

# %% [markdown]
# What to notice: character frequencies already beat guessing; the LSTM must beat them with context.
#
# **Truncated BPTT.** Each training batch is `batch_size` random windows of `seq_len + 1` characters:
# the model reads the first `seq_len` and predicts the next character at each position, so gradients
# flow back at most `seq_len` steps. AdamW with a cosine decay, bf16 autocast where it pays, and
# gradients clipped to norm `max_norm` at every step; we count how often clipping acts.


# %%
class CharLSTM(nn.Module):
    """(B, T) character ids -> (B, T, V) logits for the next character, and the LSTM state."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, x: torch.Tensor, state=None):
        out, state = self.lstm(self.embed(x), state)  # (B, T, H)
        return self.head(out), state


def random_windows(ids: torch.Tensor, batch_size: int, seq_len: int, g: torch.Generator):
    """X (B, T) and the next characters y (B, T), from random places in ``ids``."""
    starts = torch.randint(0, len(ids) - seq_len - 1, (batch_size,), generator=g)
    windows = torch.stack([ids[s : s + seq_len + 1] for s in starts.tolist()])  # (B, T + 1)
    return windows[:, :-1], windows[:, 1:]


amp_dtype = resolve_amp_dtype(None, device)  # bf16 where it pays: a recent GPU, or a CPU with native bf16


@torch.no_grad()
def val_loss(model: CharLSTM, ids: torch.Tensor, num_streams: int = 16) -> float:
    """Nats per character over ``ids``: ``num_streams`` consecutive pieces read in parallel, the
    state carried from chunk to chunk, so each character is predicted from all that came before."""
    model.eval()
    streams = ids[: len(ids) // num_streams * num_streams].view(num_streams, -1).to(device)  # (S, L)
    state, total, count = None, 0.0, 0
    for t in range(0, streams.shape[1] - 1, cfg.seq_len):
        X, y = streams[:, t : t + cfg.seq_len], streams[:, t + 1 : t + cfg.seq_len + 1]
        with autocast(device, amp_dtype):
            logits, state = model(X[:, : y.shape[1]], state)
        total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").item()
        count += y.numel()
    model.train()
    return total / count


model = CharLSTM(len(vocab), cfg.embed_dim, cfg.hidden_size, cfg.num_layers).to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.num_steps, eta_min=cfg.lr / 10)
g = torch.Generator().manual_seed(cfg.seed)
history, losses, clipped, max_grad_norm, start = [], [], 0, 0.0, time.perf_counter()
for step in progress(range(1, cfg.num_steps + 1), desc="train"):
    X, y = (t.to(device) for t in random_windows(train_ids, cfg.batch_size, cfg.seq_len, g))
    with autocast(device, amp_dtype):
        logits, _ = model(X)  # (B, T, V)
    loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.max_norm).item()  # the norm before clipping
    clipped, max_grad_norm = clipped + (grad_norm > cfg.max_norm), max(max_grad_norm, grad_norm)
    optimizer.step()
    scheduler.step()
    losses.append(loss.item())
    if step % cfg.eval_every == 0 or step == cfg.num_steps:
        row = {"step": step, "train_loss": sum(losses) / len(losses)}  # the mean since the last evaluation
        row |= {"val_loss": val_loss(model, val_ids[: cfg.eval_chars])}
        history, losses = [*history, row], []
        print(f"step {step:>5}: train {row['train_loss']:.3f}, val {row['val_loss']:.3f} nats/char")
seconds_train, lm_val_loss = time.perf_counter() - start, val_loss(model, val_ids)
print(f"{seconds_train:.0f} s; val loss {lm_val_loss:.3f} nats/char ({lm_val_loss / math.log(2):.2f} bits); "
      f"clipped {clipped / cfg.num_steps:.0%} of steps, largest norm {max_grad_norm:.2f}")  # fmt: skip
curves = {key: [r[key] for r in history] for key in ("train_loss", "val_loss")}  # every eval_every steps
fig = plot_curves(curves, title=f"char LSTM, hidden {cfg.hidden_size}", xlabel=f"evaluation (every "
                  f"{cfg.eval_every} steps)", ylabel="nats / character")  # fmt: skip
fig.axes[0].axhline(baseline, color="gray", linestyle=":", label="unigram baseline")
fig.axes[0].legend()
lesson.savefig(fig, "loss_curves")

# %% [markdown]
# What to notice: the loss falls fast below the unigram baseline (spaces, common words, capitals
# after a newline) and then slowly; the validation loss stays a little above the training loss. (The
# bundled sonnets are learnt by heart instead: the validation loss turns back up.) Clipping seldom
# acts on an LSTM (the line above says how often): it guards against the rare step that explodes.
#
# ## Sampling: temperature and top-k
#
# To write, feed a prompt, turn the logits of the next character into probabilities, draw one, feed
# it back, and repeat. A **temperature** below 1 sharpens the distribution (safer, more repetitive
# text), above 1 flattens it; **top-k** draws only among the k most likely characters.


# %%
def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, generator=None):
    """logits (B, V) -> drawn ids (B,); temperature 0 means argmax."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth_largest = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))  # the others get probability 0
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model: CharLSTM, prompt: str, length: int, temperature: float, top_k: int | None = None) -> str:
    """``length`` characters that follow ``prompt``, one at a time, the LSTM state carried along."""
    model.eval()
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    logits, state = model(vocab.encode_tensor(prompt).unsqueeze(0).to(device))  # (1, T, V)
    ids = []
    for _ in range(length):
        next_id = sample_next(logits[:, -1], temperature, top_k, generator=g)  # (1,)
        ids.append(next_id.item())
        logits, state = model(next_id.unsqueeze(0), state)  # one step: (1, 1, V)
    return vocab.decode(ids)


prompt = "ROMEO:\n" if data_name == "tiny_shakespeare" else "Shall I"
settings = {"T=0.5": (0.5, None), "T=1.0": (1.0, None), f"top-{cfg.top_k}": (1.0, cfg.top_k)}
samples = {name: generate(model, prompt, cfg.sample_len, *setting) for name, setting in settings.items()}
print("\n".join(f"--- {name}\n{prompt}{text}\n" for name, text in samples.items()))
train_words, words = set(vocab.decode(train_ids.tolist()).split()), samples["T=0.5"].split()
word_hit_rate = sum(w in train_words for w in words) / max(len(words), 1)
print(f"{word_hit_rate:.0%} of the words sampled at T=0.5 occur in the training text")

# %% [markdown]
# What to notice: at T=0.5 nearly all words are real (in full mode) and the layout of a play is there
# (a name in capitals, a colon, short lines), but phrases repeat; at T=1.0 it invents words; top-5
# cuts the unlikely tail that makes most of them, though not all.
#
# ## What you measured
#
# The cells equal PyTorch's, packing keeps each sequence's final state, clipping bounds an exploding
# gradient; the char LSTM's validation loss against the unigram baseline (full mode: 2,000 steps of
# 64 windows of 64 characters, about 8 passes over the text), and how many sampled words are real.

# %%
for kind, diff in cell_diffs.items():  # rnn_cell_max_diff, lstm_cell_max_diff, gru_cell_max_diff
    lesson.record(f"{kind.lower()}_cell_max_diff", diff, max=1e-6)
lesson.record("packed_max_diff", packed_diff, max=1e-6)
lesson.record("padded_max_diff", padded_diff, min=1e-3)  # without packing the padding leaks in
lesson.record("grad_norm_before_clip", grad_norm_before, min=1e3)
lesson.record("grad_norm_after_clip", grad_norm_after, max=cfg.max_norm * 1.001)
uniform = math.log(len(vocab))  # nats per character of a model that guesses uniformly
lesson.record("unigram_val_loss", baseline, max=uniform - 0.1, chance=uniform)  # frequencies beat guessing
lesson.record("lm_val_loss", lm_val_loss, max=1.65 if full else baseline - 0.3, chance=baseline)
lesson.record("lm_gain_over_unigram", baseline - lm_val_loss, min=1.5 if full else 0.3)
lesson.record("sample_length", len(samples["T=0.5"]), **exactly(cfg.sample_len))
lesson.record("sample_word_hit_rate", word_hit_rate, min=0.85 if full else 0.3)
lesson.finish()

# %% [markdown]
# ## Exercises
# Each cell below holds a stub: read its docstring, replace `raise NotImplementedError` with your
# code, then run the check cell at the end (or `dlkit check nlp/03` in a terminal). The checks compare
# your code with a packed `nn.LSTM`, `nn.utils.clip_grad_norm_` and a reference training run.

# %% tags=["exercise"]
import torch


def last_outputs(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Return each sequence's output at its last real step: outputs (B, T, H), lengths (B,) -> (B, H).

    outputs come from a batch-first LSTM run on a right-padded batch; a classifier reads the last
    real step, not step T - 1. The outputs before a sequence's end are right even unpacked (the
    padding comes after them); sequence b ends at index lengths[b] - 1: index with `torch.arange(B)`
    and that, or use `gather`.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def clip_grad_norm(parameters: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Write `nn.utils.clip_grad_norm_`: return the gradients' total norm, and clip them in place.

    Return the L2 norm before clipping; if it is above max_norm, scale every gradient in place
    by max_norm / (norm + 1e-6). The total norm is that of all gradients joined in one vector (not
    each tensor on its own); skip parameters whose .grad is None. Change `.grad` in place
    (`p.grad.mul_`), under `torch.no_grad()`.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch
import torch.nn.functional as F


def tbptt_epoch(model, optimizer, streams: torch.Tensor, seq_len: int) -> list[float]:
    """One pass of stateful truncated BPTT over streams (S, L) of character ids; returns each step's loss.

    Chunk after chunk (t = 0, seq_len, 2 seq_len, ... while t < L - 1): read
    X = streams[:, t : t + seq_len], predict y = the next characters (cut X to y's length at the end)
    with `logits, state = model(X, state)` (logits (S, T, V); state None at first), cross-entropy, one
    optimizer step. Carry the state to the next chunk, but `.detach()` it: the gradient stops at the
    chunk's start (`val_loss` above carries its state the same way).
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
