# %% [markdown]
# # 02 · Text classification: from raw reviews to tensors, and three models on IMDB
#
# Is a movie review positive or negative? IMDB (Maas et al., 2011) has 25,000 reviews to train on and
# 25,000 to test on, half positive. Much of this lesson is the road from a string to a batch of ids.
#
# **What you will learn**
# - a tokenizer and a vocabulary from scratch, checked against the course's `dlkit.text`;
# - padding with `pad_sequence` in a `collate_fn`, and a length-bucketing sampler that cuts it;
# - a strong classical baseline, TF-IDF + logistic regression, as the line to beat;
# - a fastText-style `EmbeddingBag` of words and bigrams, and a 1-D CNN (Kim, 2014): accuracy and cost.

# %%
from __future__ import annotations

import html
import math
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Sampler

from dlkit.config import flag
from dlkit.data import load_train_test, locate, split, synthetic_reviews
from dlkit.device import autocast, resolve_amp_dtype, seed_everything
from dlkit.lesson import Lesson, LessonConfig
from dlkit.metrics import confusion_matrix
from dlkit.plots import plot_confusion_matrix, plot_curves
from dlkit.pretrained_text import load_glove
from dlkit.text import Vocab, add_bigrams, pad_batch, tokenize
from dlkit.train import fit

TAG = re.compile(r"<[^>]{0,40}>")  # IMDB reviews carry <br /> line breaks
# A word, with one inner apostrophe ("don't"); a number ("7", "8.5"); or any other single visible mark.
TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+(?:[.,]\d+)?|[^\w\s]")
PAD_ID = 0  # id 0 of every vocabulary is padding,
UNK_ID = 1  # id 1 every token it lacks


@dataclass
class Config(LessonConfig):
    num_train: int = flag(0, help="reviews to train on, num_val of them held out (0: all 25,000)", min=0)
    num_test: int = flag(0, help="test reviews (0: all 25,000)", min=0)
    num_val: int = flag(2_000, help="held out of the training reviews, for the curves", min=1)
    min_freq: int = flag(3, help="a word or bigram seen fewer times in training becomes <unk>", min=1)
    embed_dim: int = flag(32, help="fastText's embedding size (small suffices)", min=2, max=1024)
    batch_size: int = 256
    num_epochs: int = flag(2, help="epochs of the fastText-style model", min=1, max=100)
    lr: float = flag(0.02, help="fastText's peak learning rate (decays linearly to 0)", above=0, max=1)
    max_len: int = flag(400, help="the CNN reads the first max_len words", min=5, max=5000)
    num_filters: int = flag(64, help="CNN filters per width (Kim used 100)", min=1, max=1024)
    batch_size_cnn: int = flag(64, help="reviews per CNN step", min=1)
    num_epochs_cnn: int = flag(2, help="epochs of the CNN", min=1, max=100)
    lr_cnn: float = flag(4e-3, help="the CNN's peak learning rate", above=0, max=1)


QUICK = {"num_train": 2_000, "num_test": 1_000, "num_val": 200, "min_freq": 2, "batch_size": 32}
QUICK |= {"num_epochs": 3, "max_len": 150, "num_filters": 24, "batch_size_cnn": 32, "num_epochs_cnn": 3}
lesson = Lesson("nlp/02_text_classification", Config, quick=QUICK)
cfg, device, full = lesson.cfg, lesson.device, not lesson.quick
amp_dtype = resolve_amp_dtype(None, device)  # bf16 autocast where it pays (a recent GPU, a bf16 CPU)

# %% [markdown]
# ## The data
#
# Full mode reads IMDB from the data search path (or downloads it, 80 MB). Quick mode takes 2,000
# training and 1,000 test reviews when IMDB is on disk, else SYNTHETIC reviews (filler words and a few
# sentiment words), and says so: they show that the code runs and learns, never what it does on text.

# %%
if full or locate("imdb") is not None:  # quick mode never downloads
    train, test = load_train_test("imdb", num_train=cfg.num_train, num_test=cfg.num_test, seed=cfg.seed)
else:
    print("quick mode: IMDB is not on this machine, so this run uses SYNTHETIC reviews")
    train, test = synthetic_reviews(cfg.num_train, cfg.seed), synthetic_reviews(cfg.num_test, cfg.seed + 1)
val, train = split(train, min(cfg.num_val, len(train) // 5))  # the training reviews are in random order
lesson.uses_data("reviews", f"{train.source}: {len(train):,} train, {len(val):,} val, {len(test):,} test")
print(f"label {train.classes[train.labels[0]]}: {train.texts[0][:300]!r}")

# %% [markdown]
# ## A tokenizer, from scratch
#
# Lower case, drop HTML tags (IMDB's `<br />`), decode entities (`&amp;`), straighten apostrophes;
# then one regular expression finds, left to right, a word ("don't" stays whole), a number, or one
# punctuation mark ("!" carries sentiment too). This is `dlkit.text.tokenize`, as the check shows.


# %%
def my_tokenize(text: str) -> list[str]:
    text = html.unescape(TAG.sub(" ", text))
    text = text.replace("\u2019", "'").replace("`", "'").lower()
    return TOKEN.findall(text)


print(my_tokenize("I didn't like it.<br /><br />NOT AT ALL: 2/10 &amp; boring!!"))
same = [my_tokenize(t) == tokenize(t) for t in train.texts[:2_000]]
lesson.record("tokenizer_matches_dlkit", sum(same) / len(same), min=1.0)
parts = {"train": train, "val": val, "test": test}
tokens = {name: [tokenize(text) for text in data.texts] for name, data in parts.items()}  # token lists
train_tokens, test_tokens, lengths = tokens["train"], tokens["test"], [len(t) for t in tokens["train"]]
print(f"tokens per review: median {np.median(lengths):.0f}, 90% below {np.percentile(lengths, 90):.0f}")

# %% [markdown]
# ## A vocabulary, from scratch
#
# Token -> id for the tokens seen `min_freq` times in the *training* reviews, most frequent first;
# id 0 is padding, id 1 (`<unk>`) every token the vocabulary lacks: any test review encodes.


# %%
def build_vocab(token_lists: Sequence[Sequence[str]], min_freq: int) -> list[str]:
    counts = Counter(token for ts in token_lists for token in ts)
    return ["<pad>", "<unk>", *(token for token, n in counts.most_common() if n >= min_freq)]


itos = build_vocab(train_tokens, cfg.min_freq)  # id -> token
stoi = {token: i for i, token in enumerate(itos)}  # token -> id
words = Vocab.build(train_tokens, min_freq=cfg.min_freq)  # the course's version of the same
lesson.record("vocab_matches_dlkit", float(itos == words.itos), min=1.0)
ids = [stoi.get(token, UNK_ID) for token in test_tokens[0]]
round_trip = [itos[i] for i in ids] == [t if t in stoi else "<unk>" for t in test_tokens[0]]
unk_rate = sum(t not in stoi for ts in test_tokens for t in ts) / sum(map(len, test_tokens))
lesson.record("ids_round_trip", float(round_trip and ids == words.encode(test_tokens[0])), min=1.0)
print(f"{test_tokens[0][:6]} -> {ids[:6]}; {len(words):,} tokens; {unk_rate:.1%} of the test tokens <unk>")
lesson.record("test_unk_rate", unk_rate, max=0.05 if full else 0.2)

# %% [markdown]
# A bag of words forgets order: "not good, bad" and "good, not bad" hold the same words. fastText's
# cheap fix (Joulin et al., 2017) adds each adjacent pair as a token of its own (`add_bigrams`).

# %%
ngrams = Vocab.build((add_bigrams(t) for t in train_tokens), min_freq=cfg.min_freq)
ngram_ids = {name: [torch.tensor(ngrams.encode(add_bigrams(t))) for t in ts] for name, ts in tokens.items()}
print(add_bigrams(tokenize("Not good.")), f"{len(ngrams):,} words and bigrams seen {cfg.min_freq}+ times")

# %% [markdown]
# ## Padding, a `collate_fn`, and batches of similar lengths
#
# A tensor is a rectangle: padding appends id 0 up to the longest review of the batch, here
# with `pad_sequence` in a `collate_fn` (what a DataLoader calls to make a list of examples a batch).


# %%
def collate(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """[(ids (T_i,), label), ...] -> (ids (B, T) padded with 0, labels (B,))."""
    seqs, labels = zip(*batch, strict=True)
    return pad_sequence(list(seqs), batch_first=True, padding_value=PAD_ID), torch.tensor(labels)


seqs = ngram_ids["train"][:4]
x, _ = collate([(s, 0) for s in seqs])
x_dlkit, lengths = pad_batch([s.tolist() for s in seqs])  # the course's version
same = torch.equal(x, x_dlkit) and all((row[n:] == PAD_ID).all() for row, n in zip(x, lengths, strict=True))
print(f"lengths {lengths.tolist()} -> batch {tuple(x.shape)}, ending in {x[:, -3:].tolist()}")
lesson.record("padding_matches_pad_sequence", float(same), min=1.0)

# %% [markdown]
# A random batch pairs a 50-token review with a 1,000-token one: mostly padding. A bucketing sampler
# sorts by length within pools of 50 random batches, then shuffles the batches.


# %%
class BucketBatchSampler(Sampler[list[int]]):
    """Index batches of sequences with similar lengths (sorted within pools of ``pool`` batches)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool, pool: int = 50) -> None:
        self.lengths, self.batch_size, self.shuffle, self.pool = list(lengths), batch_size, shuffle, pool

    def __iter__(self) -> Iterator[list[int]]:
        n, size = len(self.lengths), self.batch_size * self.pool
        order = torch.randperm(n).tolist() if self.shuffle else list(range(n))  # seeded by seed_everything
        batches = []
        for start in range(0, n, size):
            chunk = sorted(order[start : start + size], key=self.lengths.__getitem__)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        shuffled = torch.randperm(len(batches)).tolist() if self.shuffle else range(len(batches))
        return iter([batches[i] for i in shuffled])

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)  # every pool but the last is full


def padding_fraction(lengths: Sequence[int], batches: Sequence[list[int]]) -> float:
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - sum(lengths) / padded


def loader(seqs: list[torch.Tensor], labels: torch.Tensor, batch_size: int, shuffle: bool) -> DataLoader:
    sampler = BucketBatchSampler([len(s) for s in seqs], batch_size, shuffle)
    data = list(zip(seqs, labels.tolist(), strict=True))  # a list is a Dataset: len() and [i]
    return DataLoader(data, batch_sampler=sampler, collate_fn=collate)


n_lengths = [len(s) for s in ngram_ids["train"]]
random_batches = torch.randperm(len(n_lengths)).split(cfg.batch_size)
pad_random = padding_fraction(n_lengths, [b.tolist() for b in random_batches])
pad_bucketed = padding_fraction(n_lengths, list(BucketBatchSampler(n_lengths, cfg.batch_size, shuffle=True)))
print(f"padding: {pad_random:.0%} of a random batch, {pad_bucketed:.1%} of a bucketed one: less work")
lesson.record("bucketed_padding_ratio", pad_bucketed / pad_random, max=0.5)  # at least twice less

# %% [markdown]
# ## The line to beat: TF-IDF + logistic regression
#
# Each review becomes a row of a sparse (N, V) matrix counting its words and bigrams (the vocabulary
# above). TF-IDF damps each count (1 + log: the tenth "bad" says less than the first) and weighs it
# by the token's rarity across reviews ("the" says nothing); logistic regression learns a weight each.


# %%
def count_matrix(seqs: Sequence[torch.Tensor], vocab_size: int) -> sp.csr_matrix:
    """Id sequences -> (N, V) sparse counts: entry (i, j) counts id j in sequence i."""
    indptr, ids = np.cumsum([0, *map(len, seqs)]), torch.cat(list(seqs)).numpy()  # CSR row starts, columns
    counts = sp.csr_matrix((np.ones(len(ids), np.float32), ids, indptr), shape=(len(seqs), vocab_size))
    counts.sum_duplicates()
    return counts


accuracy, seconds, histories, predictions = {}, {}, {}, {}
start = time.perf_counter()
tfidf = TfidfTransformer(sublinear_tf=True)
X_train = tfidf.fit_transform(count_matrix(ngram_ids["train"], len(ngrams))[:, 2:])  # no <pad>, <unk>
X_test = tfidf.transform(count_matrix(ngram_ids["test"], len(ngrams))[:, 2:])
baseline = LogisticRegression(C=8.0, max_iter=1_000).fit(X_train, train.labels.numpy())
seconds["baseline"] = time.perf_counter() - start
accuracy["baseline"] = (torch.from_numpy(baseline.predict(X_test)) == test.labels).float().mean().item()
top = np.argsort(baseline.coef_[0])
print(f"TF-IDF + logistic regression: test accuracy {accuracy['baseline']:.4f} ({seconds['baseline']:.1f} s)")
print("most negative:", ngrams.decode(top[:8] + 2), "\nmost positive:", ngrams.decode(top[-8:][::-1] + 2))

# %% [markdown]
# What to notice: a high accuracy in seconds; the weights read like a sentiment dictionary, bigrams
# included. A network has to beat that to earn its cost.
#
# ## A fastText-style model: the mean of word and bigram embeddings
#
# Embed every token, average the embeddings, then a linear layer. `nn.EmbeddingBag(mode="mean")` does
# the lookup and the mean in one op, without the (B, T, D) tensor; `padding_idx=0` leaves pads out.


# %%
class FastText(nn.Module):
    """(B, T) token ids, 0-padded -> (B, num_classes) logits: mean of token embeddings, then linear."""

    def __init__(self, vocab_size: int, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean", padding_idx=PAD_ID)
        self.fc = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embedding(x))  # (B, T) -> (B, D) -> (B, C)


def train_model(name: str, model: nn.Module, data: dict, lr: float, num_epochs: int, batch_size: int) -> None:
    """Adam, lr decaying linearly to 0 (fastText's schedule); keeps history, seconds, test accuracy."""
    seed_everything(cfg.seed)
    train_loader = loader(data["train"], train.labels, batch_size, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.0, num_epochs * len(train_loader))
    start, val_loader = time.perf_counter(), loader(data["val"], val.labels, 256, shuffle=False)
    histories[name] = fit(model, optimizer, train_loader, val_loader, loss_fn=F.cross_entropy,
                          num_epochs=num_epochs, device=device, scheduler=scheduler,
                          scheduler_interval="batch")  # fmt: skip
    seconds[name], predictions[name] = time.perf_counter() - start, predict(model, data["test"])
    accuracy[name] = (predictions[name] == test.labels).float().mean().item()
    print(f"{name}: test accuracy {accuracy[name]:.4f} ({seconds[name]:.1f} s of training)")


@torch.no_grad()
def predict(model: nn.Module, seqs: list[torch.Tensor]) -> torch.Tensor:
    """(N,) predicted classes, computed in bucketed batches and put back in the order of ``seqs``."""
    model.eval()
    y_hat = torch.empty(len(seqs), dtype=torch.long)
    for batch in BucketBatchSampler([len(s) for s in seqs], 256, shuffle=False):
        x = pad_sequence([seqs[i] for i in batch], batch_first=True).to(device)  # (B, T)
        with autocast(device, amp_dtype):
            y_hat[batch] = model(x).argmax(dim=1).cpu()
    return y_hat


seed_everything(cfg.seed)
fasttext = FastText(len(ngrams), cfg.embed_dim, len(train.classes))
train_model("fasttext", fasttext, ngram_ids, cfg.lr, cfg.num_epochs, cfg.batch_size)
for text in ("A good movie.", "Not a good movie.", "Not bad at all.", "A bad movie."):
    x = torch.tensor([ngrams.encode(add_bigrams(tokenize(text)))], device=device)  # (1, T)
    print(f"P(pos | {text!r}) = {fasttext.eval()(x).float().softmax(dim=1)[0, 1]:.2f}")

# %% [markdown]
# What to notice: two epochs come close to the baseline. It is still a bag: "not a good movie" holds
# no bigram "not good" and reads as praise, "not bad at all" as a pan (the probabilities above).
#
# ## A 1-D convolutional network (Kim, 2014)
#
# A filter of width 3 slides along the review and fires on a 3-word pattern wherever it is ("not
# worth it"). Max-over-time pooling keeps each filter's strongest response: any review becomes one
# vector. It reads the first `max_len` words, starting from GloVe's 50-d vectors (lesson 01), as Kim did.


# %%
class TextCNN(nn.Module):
    """(B, T) word ids -> (B, num_classes): embeddings, convolutions of widths 3/4/5, max over time."""

    def __init__(self, vocab_size: int, embed_dim: int, num_filters: int, num_classes: int) -> None:
        widths, dropout = (3, 4, 5), 0.5  # Kim's
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, num_filters, width) for width in widths)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_filters * len(widths), num_classes)
        self.max_width = max(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, max(0, self.max_width - x.shape[1])), value=PAD_ID)  # the widest filter fits
        e = self.embedding(x).transpose(1, 2)  # (B, T, D) -> (B, D, T): Conv1d wants channels first
        features = torch.cat([F.relu(conv(e)).amax(dim=2) for conv in self.convs], dim=1)  # (B, F * 3)
        return self.fc(self.dropout(features))  # (B, C)


def glove_init(embedding: nn.Embedding, vocab: Vocab) -> float:
    """Copy GloVe's vector into each vocabulary word's row; return the share of words found."""
    glove = load_glove(max_words=100_000)  # the most frequent words, from a pip package: no network
    found = [(i, glove.index[w]) for i, w in enumerate(vocab.itos) if w in glove.index]
    rows, glove_rows = torch.tensor(found).T
    with torch.no_grad():
        embedding.weight[rows] = glove.vectors[glove_rows].to(embedding.weight)
    lesson.uses_data("glove", glove.source)
    return len(found) / len(vocab)


cnn_vocab = Vocab.build(train_tokens, min_freq=2, max_size=30_000)  # words only: filters see the order
word_ids = {k: [torch.tensor(cnn_vocab.encode(t[: cfg.max_len])) for t in ts] for k, ts in tokens.items()}
seed_everything(cfg.seed)
cnn = TextCNN(len(cnn_vocab), 50, cfg.num_filters, len(train.classes))  # 50: GloVe's size
glove_coverage = glove_init(cnn.embedding, cnn_vocab)
print(f"GloVe covers {glove_coverage:.0%} of the CNN's {len(cnn_vocab):,} words")
train_model("cnn", cnn, word_ids, cfg.lr_cnn, cfg.num_epochs_cnn, cfg.batch_size_cnn)

# %% [markdown]
# What to notice: a CNN epoch costs several fastText epochs, and sized for a 2-core CPU it does not beat
# the bags of bigrams (in full mode): long reviews full of sentiment words suit a bag. Below: the
# training curves, and the confusion matrix of the best network.


# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for ax, key in zip(axes, ("train_loss", "val_acc"), strict=True):  # per epoch; val: the held-out reviews
    curves = {name: history.column(key) for name, history in histories.items()}
    plot_curves(curves, title=key, xlabel="epoch", ylabel=key, ax=ax)
lesson.savefig(fig, "training_curves")
best = max(("fasttext", "cnn"), key=accuracy.get)
cm = confusion_matrix(predictions[best], test.labels, len(test.classes))
lesson.savefig(plot_confusion_matrix(cm, test.classes, title=f"{best}, test set"), "confusion_matrix")

# %% [markdown]
# ## What you measured
#
# Each model's test accuracy and training seconds. In full mode (23,000 reviews to train, 25,000 to
# test) the linear baseline is the line to beat; pretrained transformers (lesson 05) pass it.

# %%
for name in accuracy:
    print(f"{name:<9} test accuracy {accuracy[name]:.4f}  ({seconds[name]:.1f} s)")
minimum = {"baseline": (0.89, 0.7), "fasttext": (0.88, 0.65), "cnn": (0.85, 0.6)}  # (full, quick)
for name, value in accuracy.items():
    lesson.record(f"{name}_acc", value, min=minimum[name][lesson.quick], chance=0.5)  # two balanced classes
lesson.record("glove_coverage", glove_coverage, min=0.8, max=1.0)
lesson.finish()

# %% [markdown]
# ## Exercises
# Each cell below holds a stub: read its docstring, replace `raise NotImplementedError` with your
# code, then run the check cell at the end (or `dlkit check nlp/02` in a terminal). The checks compare
# your code with `nn.EmbeddingBag`, scikit-learn's `TfidfTransformer` and `F.conv1d`.

# %% tags=["exercise"]
import torch


def bag_mean(ids: torch.Tensor, weight: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Write FastText's `nn.EmbeddingBag(mode="mean", padding_idx=pad_id)`: ids (B, T) -> (B, D).

    ids are 0-padded, weight is the table (V, D); the result is the mean of each row's token
    vectors, padding left out. Look the rows up (`weight[ids]`, (B, T, D)), zero the padding with a
    mask, divide by the number of real tokens. A review with no real token gets zeros, as
    EmbeddingBag gives (no NaN).
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def tfidf(counts: torch.Tensor) -> torch.Tensor:
    """Write TF-IDF as `TfidfTransformer(sublinear_tf=True)` computes it: counts (N, V) -> (N, V).

    tf = 1 + ln(count) where count > 0, else 0; idf = ln((1 + N) / (1 + df)) + 1, where df counts
    the rows in which the token occurs (the 1s "smooth" it, as if one extra row held every token);
    then each row of tf * idf is divided by its L2 norm.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def conv_max_over_time(e: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """One width of TextCNN by hand: e (B, T, D), weight (F, D, k), bias (F,) -> features (B, F).

    A feature is the ReLU of one filter's response at every position, maxed over the positions.
    `e.unfold(1, k, 1)` gives the windows, (B, T - k + 1, D, k); a filter's response is the sum over
    (D, k) of window * filter, plus its bias (`torch.einsum`). No kernel flip: this is `F.conv1d`.
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
