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
# - a fastText-style `EmbeddingBag` of words and bigrams, and a 1-D CNN (Kim, 2014): accuracy, seconds.

# %%
from __future__ import annotations

import html
import math
import random
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

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

from dlkit.data import TextClassificationData, choose_dataset, load_dataset
from dlkit.device import seed_everything
from dlkit.lesson import Lesson, LessonConfig
from dlkit.metrics import confusion_matrix
from dlkit.plots import plot_confusion_matrix
from dlkit.pretrained_text import load_glove
from dlkit.text import Vocab, add_bigrams, pad_batch, tokenize
from dlkit.train import fit, resolve_amp_dtype

TAG = re.compile(r"<[^>]{0,40}>")  # IMDB reviews carry <br /> line breaks
# A word, with one inner apostrophe ("don't"); a number ("7", "8.5"); or any other single visible mark.
TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+(?:[.,]\d+)?|[^\w\s]")
PAD_ID = 0  # ids 0 and 1 of every vocabulary
UNK_ID = 1


@dataclass
class Config(LessonConfig):
    num_train: int = 0  # reviews to train on (0 = all 25,000), of which num_val are held out
    num_test: int = 0  # 0 = all 25,000
    num_val: int = 2_000  # held out of the training reviews, for the curves: the test set stays unseen
    min_freq: int = 3  # a word or bigram seen fewer times in training becomes <unk>
    embed_dim: int = 32  # fastText: small embeddings suffice for an average
    batch_size: int = 256
    num_epochs: int = 2
    lr: float = 0.02  # fastText learns fast: one epoch already gives 0.89
    max_len: int = 400  # the CNN reads the first 400 words (80% of the reviews are shorter)
    num_filters: int = 64  # per width: Kim used 100 and 300-d vectors; we size it for a 2-core CPU
    batch_size_cnn: int = 64
    num_epochs_cnn: int = 2
    lr_cnn: float = 4e-3


QUICK = {"num_train": 2_000, "num_test": 1_000, "num_val": 200, "min_freq": 2, "batch_size": 32}
QUICK |= {"num_epochs": 3, "max_len": 200, "num_filters": 32, "batch_size_cnn": 32, "num_epochs_cnn": 3}
lesson = Lesson("nlp/02_text_classification", Config, quick=QUICK)
cfg, device, full = lesson.cfg, lesson.device, not lesson.quick
amp_dtype = resolve_amp_dtype(None, device)  # bf16 autocast on a recent GPU, none on most CPUs

# %% [markdown]
# ## The data
#
# Full mode reads IMDB from the data search path (or downloads it, 80 MB). Quick mode takes 2,000
# training and 1,000 test reviews when IMDB is on disk, else the 200 movie-review sentences of Pang
# & Lee that ship with gensim's tests (real text, too few for the numbers to mean much), and says so.


# %%
def sentence_polarity(seed: int) -> TextClassificationData:
    """gensim's copy of 200 Pang & Lee (2005) sentences, "__label__pos text" a line, in random order."""
    import gensim.test.utils

    path = Path(gensim.test.utils.datapath("pang_lee_polarity.cor"))
    lines = path.read_text(encoding="cp1252").splitlines()  # Windows-1252 dashes and accents
    random.Random(seed).shuffle(lines)
    labels = torch.tensor([int(line.startswith("__label__pos")) for line in lines])
    texts = [line.split(" ", 1)[1] for line in lines]
    return TextClassificationData(texts, labels, ["neg", "pos"], f"Pang & Lee's sentences from {path}")


def split(data: TextClassificationData, n: int) -> tuple[TextClassificationData, TextClassificationData]:
    """The first ``n`` examples, and the rest."""
    parts = [(data.texts[p], data.labels[p], data.classes, data.source) for p in (slice(n), slice(n, None))]
    return TextClassificationData(*parts[0]), TextClassificationData(*parts[1])


data_name = choose_dataset("imdb", "sentence_polarity", quick=lesson.quick)
if data_name == "imdb":
    train, test = load_dataset("imdb", "train"), load_dataset("imdb", "test")
    train = train.subset(cfg.num_train, seed=cfg.seed) if cfg.num_train else train
    test = test.subset(cfg.num_test, seed=cfg.seed) if cfg.num_test else test
else:
    test, train = split(sentence_polarity(cfg.seed), 50)
val, train = split(train, min(cfg.num_val, len(train) // 5))  # the training reviews are in random order
lesson.uses_data(data_name, f"{train.source}: {len(train):,} train, {len(val):,} val, {len(test):,} test")
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
splits = {"train": train, "val": val, "test": test}
tokens = {name: [tokenize(text) for text in data.texts] for name, data in splits.items()}  # token lists
train_tokens, test_tokens = tokens["train"], tokens["test"]
lengths = np.array([len(t) for t in train_tokens])
print(f"tokens per review: median {np.median(lengths):.0f}, 90% below {np.percentile(lengths, 90):.0f}")

# %% [markdown]
# ## A vocabulary, from scratch
#
# Token -> id for the tokens seen `min_freq` times in the *training* reviews, most frequent first.
# Id 0 is padding, id 1 (`<unk>`) every token the vocabulary lacks: any test review encodes.


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
print(f"{test_tokens[0][:8]} -> {ids[:8]} -> {words.decode(ids[:8])}")
unk_rate = sum(t not in stoi for ts in test_tokens for t in ts) / sum(map(len, test_tokens))
lesson.record("ids_round_trip", float(round_trip and ids == words.encode(test_tokens[0])), min=1.0)
lesson.record("vocab_size", len(words), min=20_000 if full else 100)
lesson.record("test_unk_rate", unk_rate, max=0.05 if full else 0.5)

# %% [markdown]
# What to notice: 1.5% of the test tokens are unknown in full mode (typos, rare names).
#
# A bag of words forgets order: "not good, bad" and "good, not bad" hold the same words. fastText's
# cheap fix (Joulin et al., 2017) adds each adjacent pair as a token of its own (`add_bigrams`).

# %%
print(add_bigrams(tokenize("Not good, really.")))
ngrams = Vocab.build((add_bigrams(t) for t in train_tokens), min_freq=cfg.min_freq)
ngram_ids = {name: [torch.tensor(ngrams.encode(add_bigrams(t))) for t in ts] for name, ts in tokens.items()}
lesson.record("vocab_size_ngrams", len(ngrams), min=100_000 if full else 100)

# %% [markdown]
# ## Padding, a `collate_fn`, and batches of similar lengths
#
# A tensor is a rectangle: padding appends id 0 up to the longest review of the batch. By hand, then
# with `pad_sequence` in a `collate_fn` (what a DataLoader calls to make a list of examples a batch).


# %%
def pad_by_hand(seqs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in seqs])
    ids = torch.full((len(seqs), int(lengths.max())), PAD_ID)  # (B, T)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
    return ids, lengths


def collate(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """[(ids (T_i,), label), ...] -> (ids (B, T) padded with 0, labels (B,))."""
    seqs, labels = zip(*batch, strict=True)
    return pad_sequence(list(seqs), batch_first=True, padding_value=PAD_ID), torch.tensor(labels)


seqs = ngram_ids["train"][:4]
(x_hand, lengths_hand), (x, _) = pad_by_hand(seqs), collate([(s, 0) for s in seqs])
x_dlkit, lengths_dlkit = pad_batch([s.tolist() for s in seqs])  # the course's version
same = torch.equal(x_hand, x) and torch.equal(x, x_dlkit) and torch.equal(lengths_hand, lengths_dlkit)
print(f"lengths {lengths_hand.tolist()} -> batch {tuple(x.shape)}, ending in {x[:, -3:].tolist()}")
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
print(f"padding: {pad_random:.0%} of a random batch, {pad_bucketed:.1%} of a bucketed one")
lesson.record("pad_fraction_random", pad_random, min=0.2 if full else 0.0)
lesson.record("pad_fraction_bucketed", pad_bucketed, max=0.2 if full else 0.35)

# %% [markdown]
# What to notice: in full mode 78% of a random batch is padding, 12% of a bucketed one: 4x less work.
#
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


accuracy, seconds, curves = {}, {}, {}
start = time.perf_counter()
tfidf = TfidfTransformer(sublinear_tf=True)
X_train = tfidf.fit_transform(count_matrix(ngram_ids["train"], len(ngrams))[:, 2:])  # no <pad>, <unk>
X_test = tfidf.transform(count_matrix(ngram_ids["test"], len(ngrams))[:, 2:])
baseline = LogisticRegression(C=8.0, max_iter=1_000).fit(X_train, train.labels.numpy())
seconds["baseline"] = time.perf_counter() - start
y_hat_baseline = torch.from_numpy(baseline.predict(X_test))
accuracy["baseline"] = (y_hat_baseline == test.labels).float().mean().item()
top = np.argsort(baseline.coef_[0])
print(f"TF-IDF + logistic regression: test accuracy {accuracy['baseline']:.4f} ({seconds['baseline']:.1f} s)")
print("most negative:", ngrams.decode(top[:8] + 2), "\nmost positive:", ngrams.decode(top[-8:][::-1] + 2))

# %% [markdown]
# What to notice: about 0.91 in full mode, in seconds; the weights read like a sentiment dictionary,
# bigrams included. A network has to beat that to earn its cost.
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
    """Adam, lr decaying linearly to 0 (fastText's schedule), for ``num_epochs``; keeps curves and seconds."""
    seed_everything(cfg.seed)
    train_loader = loader(data["train"], train.labels, batch_size, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.0, num_epochs * len(train_loader))
    losses: list[torch.Tensor] = []

    def loss_fn(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # keeps each training step's loss
        loss = F.cross_entropy(y_hat, y)
        if torch.is_grad_enabled():  # evaluate() runs without gradients
            losses.append(loss.detach())  # no .item(): a GPU need not wait for it
        return loss

    start = time.perf_counter()
    kwargs = {"loss_fn": loss_fn, "num_epochs": num_epochs, "device": device, "scheduler": scheduler}
    val_loader = loader(data["val"], val.labels, 256, shuffle=False)
    history = fit(model, optimizer, train_loader, val_loader, scheduler_interval="batch", **kwargs)
    seconds[name] = time.perf_counter() - start
    curves[name] = (torch.stack(losses).float().cpu(), len(train_loader), history.column("val_acc"))


@torch.no_grad()
def predict(model: nn.Module, seqs: list[torch.Tensor]) -> torch.Tensor:
    """(N,) predicted classes, computed in bucketed batches and put back in the order of ``seqs``."""
    model.eval()
    y_hat = torch.empty(len(seqs), dtype=torch.long)
    for batch in BucketBatchSampler([len(s) for s in seqs], 256, shuffle=False):
        x = pad_sequence([seqs[i] for i in batch], batch_first=True).to(device)  # (B, T)
        with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            y_hat[batch] = model(x).argmax(dim=1).cpu()
    return y_hat


seed_everything(cfg.seed)
fasttext = FastText(len(ngrams), cfg.embed_dim, len(train.classes))
train_model("fasttext", fasttext, ngram_ids, cfg.lr, cfg.num_epochs, cfg.batch_size)
y_hat_fasttext = predict(fasttext, ngram_ids["test"])
accuracy["fasttext"] = (y_hat_fasttext == test.labels).float().mean().item()
print(f"fastText-style: test accuracy {accuracy['fasttext']:.4f} ({seconds['fasttext']:.1f} s of training)")
for text in ("A good movie.", "Not a good movie.", "Not bad at all.", "A bad movie."):
    x = torch.tensor([ngrams.encode(add_bigrams(tokenize(text)))], device=device)  # (1, T)
    print(f"P(pos | {text!r}) = {fasttext.eval()(x).float().softmax(dim=1)[0, 1]:.2f}")

# %% [markdown]
# What to notice: two epochs give about 0.89. It is still a bag: "not a good movie" holds no bigram
# "not good" and reads as praise (0.97 in full mode), "not bad at all" as a pan (0.00).
#
# ## A 1-D convolutional network (Kim, 2014)
#
# A filter of width 3 slides along the review and fires on a 3-word pattern wherever it is ("not
# worth it"). Max-over-time pooling keeps each filter's strongest response: any review becomes one
# vector; dropout and a linear layer follow. It reads the first `max_len` words. Kim started from
# pretrained word vectors; we start from GloVe's 50-d ones (lesson 01) and fine-tune them.


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

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, max(0, self.max_width - x.shape[1])), value=PAD_ID)  # the widest filter fits
        e = self.embedding(x).transpose(1, 2)  # (B, T, D) -> (B, D, T): Conv1d wants channels first
        return torch.cat([F.relu(conv(e)).amax(dim=2) for conv in self.convs], dim=1)  # (B, F * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))  # (B, C)


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
word_ids = {
    name: [torch.tensor(cnn_vocab.encode(t[: cfg.max_len])) for t in ts] for name, ts in tokens.items()
}
seed_everything(cfg.seed)
cnn = TextCNN(len(cnn_vocab), 50, cfg.num_filters, len(train.classes))  # 50: GloVe's size
glove_coverage = glove_init(cnn.embedding, cnn_vocab)
train_model("cnn", cnn, word_ids, cfg.lr_cnn, cfg.num_epochs_cnn, cfg.batch_size_cnn)
y_hat_cnn = predict(cnn, word_ids["test"])
accuracy["cnn"] = (y_hat_cnn == test.labels).float().mean().item()
print(f"GloVe covers {glove_coverage:.0%} of the CNN's {len(cnn_vocab):,} words")
print(f"1-D CNN: test accuracy {accuracy['cnn']:.4f} ({seconds['cnn']:.1f} s of training)")

# %% [markdown]
# What to notice: a CNN epoch costs several fastText epochs, and sized for a 2-core CPU it does not
# beat the bags of bigrams: long reviews full of sentiment words suit a bag.
#
# ## Training curves, and the confusion matrix of the best network


# %%
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
for name, (losses, steps_per_epoch, val_acc) in curves.items():
    window = max(1, min(50, len(losses) // 10))  # a moving average smooths the noise of single batches
    smooth = np.convolve(losses.numpy(), np.ones(window) / window, mode="valid")
    ax_loss.plot((np.arange(len(smooth)) + window) / steps_per_epoch, smooth, label=name)
    ax_acc.plot(range(1, len(val_acc) + 1), val_acc, marker="o", label=name)
ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss per batch (moving average)")
ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title=f"{len(val):,} held-out reviews")
for ax in (ax_loss, ax_acc):
    ax.legend()
    ax.grid(alpha=0.3)
lesson.savefig(fig, "training_curves")

best = max(("fasttext", "cnn"), key=accuracy.get)
y_hat_best = {"fasttext": y_hat_fasttext, "cnn": y_hat_cnn}[best]
cm = confusion_matrix(y_hat_best, test.labels, len(test.classes))
lesson.savefig(plot_confusion_matrix(cm, test.classes, title=f"{best}, test set"), "confusion_matrix")

# %% [markdown]
# ## What you measured
#
# Full mode (22,998 reviews to train, 2,000 to validate, 24,998 to test; seed 0; 2 threads of a 2-core
# CPU shared with other jobs, load average 7): TF-IDF + logistic regression 0.909 (16 s), fastText-style
# 0.894 (107 s of training), the CNN 0.862 (465 s; 12 minutes in all). The linear baseline stays the
# line to beat on long reviews; pretrained transformers (lesson 04) pass it. Try `--num-epochs-cnn 4`.

# %%
minimum = {"baseline": (0.89, 0.6), "fasttext": (0.88, 0.5), "cnn": (0.85, 0.4), "best_neural": (0.89, 0.5)}
tiny = data_name != "imdb"  # 150 sentences to learn from: any accuracy can happen
for name, value in [*accuracy.items(), ("best_neural", accuracy[best])]:  # minimum: (full, quick) mode
    lesson.record(f"{name}_acc", value, min=0.0 if tiny else minimum[name][lesson.quick], max=1.0)
for name, value in seconds.items():
    lesson.record(f"seconds_{name}", value, min=0.0)
lesson.record("best_neural_train_seconds", seconds[best], min=0.0, max=180.0 if full else None)
lesson.record("glove_coverage", glove_coverage, min=0.8 if full else 0.0, max=1.0)
lesson.finish()
