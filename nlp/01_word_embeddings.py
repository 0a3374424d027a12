# %% [markdown]
# # 01 · Word embeddings: skip-gram with negative sampling, gensim, GloVe
#
# A network reads words as ids. How it represents an id decides what it can generalise: a one-hot
# vector says only "this word", a dense vector learned from text says "a word used like these".
# We train word2vec's skip-gram with negative sampling (SGNS; Mikolov et al., 2013) in PyTorch on
# IMDB's 50,000 movie reviews, check it against gensim's C implementation on the same words, and
# then look at GloVe vectors trained on 6 billion words.
#
# **What you will learn**
# - one-hot vs dense embeddings: an `nn.Embedding` lookup is a one-hot vector times a matrix;
# - SGNS from its parts: subsampling of frequent words, (centre, context) pairs made with tensor ops,
#   a noise distribution (unigram counts to the power 0.75), two embedding tables, sparse gradients;
# - how to judge embeddings: neighbours, related vs random pairs, and the Google analogy set (19,544
#   questions such as "athens : greece :: oslo : ?"); what gensim's tuned C loop buys in speed;
# - king - man + woman with real GloVe vectors, and a 2-D projection of them.

# %%
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from gensim.models import Word2Vec
from gensim.test.utils import datapath
from torch import nn

from dlkit.config import flag
from dlkit.data import load_dataset, locate
from dlkit.lesson import Lesson, LessonConfig
from dlkit.metrics import analogy_accuracy, analogy_ranking, nearest_words, read_analogies
from dlkit.plots import plot_word_pairs
from dlkit.pretrained_text import load_glove
from dlkit.progress import progress
from dlkit.text import Vocab, tokenize

ANALOGIES = datapath("questions-words.txt")  # Mikolov et al.'s analogy set, shipped in gensim's test data
LEE_CORPUS = datapath("lee_background.cor")  # 300 Australian news stories (gensim's test data): what ships
# Pairs of words that any decent embedding of English places near each other.
RELATED = (
    "movie film, good great, bad terrible, funny hilarious, boring dull, actor actress, man woman, he she, "
    "his her, father mother, day night, first second, says said"
)


@dataclass
class Config(LessonConfig):
    num_docs: int = flag(50_000, help="IMDB reviews (train and test texts, no labels): ~11M words", min=1)
    min_count: int = flag(5, help="rarer words are dropped, as gensim does", min=1)
    dim: int = flag(100, help="dimensions of each word vector", min=2, max=1024)
    window: int = flag(5, help="context: up to this many words either side (each centre draws 1..window)",
                       min=1, max=20)  # fmt: skip
    num_negatives: int = flag(5, help="noise words per (centre, context) pair", min=1, max=50)
    sample: float = flag(1e-4, help="subsampling threshold: more frequent words are thinned out", above=0)
    num_epochs: int = flag(1, help="passes over the corpus", min=1, max=100)
    lr: float = flag(0.025, help="word2vec's starting lr, decayed linearly to 0", above=0, max=1)
    batch_size: int | None = flag(None, help="pairs per step (default 4,096; 65,536 on a GPU)", min=1)
    gensim_workers: int = flag(2, help="gensim's worker threads", min=1, max=64)
    glove_words: int = flag(0, help="GloVe words to load, most frequent first (0: all 400,000)", min=0)


QUICK = {"num_docs": 250, "num_epochs": 4, "batch_size": 1_024, "glove_words": 50_000}  # ~50,000 words
lesson = Lesson("nlp/01_word_embeddings", Config, quick=QUICK)
cfg, device = lesson.cfg, lesson.device
batch_size = cfg.batch_size or (65_536 if device.type == "cuda" else 4_096)

# %% [markdown]
# ## The corpus
#
# IMDB's review texts, train and test together: no labels are needed to learn embeddings. We keep
# words only (no numbers or punctuation), lower-cased by `dlkit.text.tokenize`. Quick mode takes
# 250 reviews when IMDB is on disk, else 250 of the news stories that ship with gensim, and says
# which: far too little text to learn good vectors, only to run the code and see the loss fall.


# %%
def load_corpus() -> tuple[str, list[str], str]:
    """(name, documents, description): IMDB reviews, else (quick mode) a text found on disk or shipped."""
    if not lesson.quick or locate("imdb") is not None:
        texts = load_dataset("imdb", "train").texts
        if cfg.num_docs > len(texts):
            texts = texts + load_dataset("imdb", "test").texts
        return "imdb", texts[: cfg.num_docs], "IMDB review texts (train, then test), labels unused"
    print("quick mode: IMDB is not on this machine")
    stories = Path(LEE_CORPUS).read_text(encoding="utf-8").splitlines()
    return "lee_news", stories[: cfg.num_docs], f"Lee news corpus shipped with gensim ({LEE_CORPUS})"


corpus_name, documents, description = load_corpus()
sentences = [[w for w in tokenize(text) if w[0].isalpha()] for text in documents]  # words only
vocab = Vocab.build(sentences, min_freq=cfg.min_count)
num_words = sum(map(len, sentences))
lesson.uses_data(corpus_name, f"{len(documents):,} documents, {num_words:,} words: {description}")
print(f"vocabulary: {len(vocab):,} words seen at least {cfg.min_count} times; first: {vocab.itos[2:12]}")

# %% [markdown]
# ## One-hot vs dense
#
# A one-hot vector of word i has V entries, all 0 but a 1 at i: every two words are equally far apart
# (cosine 0), and a V x V matrix would be needed to map them anywhere. An embedding table E (V, D)
# holds one row per word; `one_hot(i) @ E` picks row i, which `nn.Embedding` does without the zeros.

# %%
ids = torch.tensor(vocab.encode(["good", "great", "film"]))  # (3,)
one_hot = F.one_hot(ids, len(vocab)).float()  # (3, V)
table = nn.Embedding(len(vocab), cfg.dim)
lookup_diff = (one_hot @ table.weight - table(ids)).abs().max().item()
cosine = F.cosine_similarity(one_hot[0], one_hot[1], dim=0)
print(f"one-hot cosine of good, great: {cosine:.1f}; one-hot @ table - lookup: {lookup_diff:.1e}")

# %% [markdown]
# What to notice: the product equals the lookup, so an embedding is a linear layer on one-hot inputs,
# stored as the only rows that ever matter. Its rows start random; training must put words used in
# the same contexts ("good", "great") near each other.
#
# ## Skip-gram with negative sampling, piece by piece
#
# Skip-gram predicts the words around a centre word. Negative sampling turns that into binary
# classification: a real (centre, context) pair should score high, the centre with K words drawn
# from a *noise* distribution should score low. The score is a dot product of the centre's row of
# one table (`emb_in`) with the other word's row of a second table (`emb_out`).
#
# Two frequency tricks from word2vec: each occurrence of a word with corpus frequency f is kept with
# probability (sqrt(f / sample) + 1) * sample / f (the frequent "the", "and" mostly go: they say
# little about their neighbours), and negatives are drawn with probability ~ count^0.75 (rare words
# a little more often than their counts say).


# %%
def keep_probability(counts: torch.Tensor, sample: float) -> torch.Tensor:
    """(V,) chance to keep each occurrence of a word in an epoch, word2vec's (and gensim's) formula."""
    f = counts.double() / counts.sum()
    return (((f / sample).sqrt() + 1) * sample / f.clamp_min(1e-12)).clamp(max=1.0).float()


def noise_distribution(counts: torch.Tensor, power: float = 0.75) -> torch.Tensor:
    """(V,) probabilities of drawing each word as a negative: count^0.75, normalised."""
    weights = counts.double() ** power
    return (weights / weights.sum()).float()


def skipgram_pairs(ids: torch.Tensor, doc: torch.Tensor, spans: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """All (centre, context) pairs of the word stream ``ids`` (N,): the context of word t is the
    ``spans[t]`` words either side, within its own document ``doc[t]``. Returns (P,) and (P,)."""
    centres, contexts = [], []
    for d in range(1, int(spans.max()) + 1):  # offset d: word t with word t + d, in both directions
        same_doc = doc[:-d] == doc[d:]
        right, left = same_doc & (spans[:-d] >= d), same_doc & (spans[d:] >= d)
        centres += [ids[:-d][right], ids[d:][left]]
        contexts += [ids[d:][right], ids[:-d][left]]
    return torch.cat(centres), torch.cat(contexts)


def sgns_loss(v: torch.Tensor, u: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(u.v) - sum_k log sigmoid(-n_k.v) for centres v (B, D), contexts u (B, D) and
    negatives n (B, K, D); returns (B,)."""
    positive = (v * u).sum(-1)  # (B,)
    negative = (n * v.unsqueeze(1)).sum(-1)  # (B, K): elementwise beats bmm for such small products
    return -(F.logsigmoid(positive) + F.logsigmoid(-negative).sum(-1))


# %% [markdown]
# The whole corpus becomes one stream of ids plus a document id per word, so that a window never
# crosses from one review into the next. Out-of-vocabulary words are removed first, as gensim does.

# %%
streams = [torch.tensor(vocab.encode(s)) for s in sentences]
doc = torch.cat([torch.full((len(s),), i) for i, s in enumerate(streams)]).to(device)  # (N,)
stream = torch.cat(streams).to(device)  # (N,) word ids
known = stream >= 2  # ids 0 and 1 are <pad> and <unk>
stream, doc = stream[known], doc[known]
counts = torch.bincount(stream, minlength=len(vocab))  # (V,)
p_keep, noise = keep_probability(counts, cfg.sample), noise_distribution(counts)
expected_kept = (p_keep.double() * counts).sum() / counts.sum()
print(f"{len(stream):,} words in the vocabulary; subsampling keeps {expected_kept:.0%} of them")
for i in vocab.encode(["the", "movie", "good", "hilarious"]):  # kept share, noise and unigram probability
    print(f"  {vocab.itos[i]}: kept {p_keep[i]:.2f}, noise {noise[i]:.1e} ({counts[i] / counts.sum():.1e})")

# %% [markdown]
# What to notice: "the" is kept a few percent of the time, a rare word always; the 0.75 power lowers
# the noise probability of "the" below its frequency and raises that of rare words.
#
# ## Training
#
# Each epoch subsamples the stream, draws a window width per centre, builds all pairs with the tensor
# ops above, shuffles them and runs batches. The tables use sparse gradients (only the rows in the
# batch change), and plain SGD with word2vec's linearly decaying learning rate on the summed loss:
# the same update as word2vec, applied to a batch at once.


# %%
class SkipGram(nn.Module):
    """Two tables: ``emb_in`` for centre words (the embeddings we keep), ``emb_out`` for context words."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.emb_in = nn.Embedding(vocab_size, dim, sparse=True)
        self.emb_out = nn.Embedding(vocab_size, dim, sparse=True)
        nn.init.uniform_(self.emb_in.weight, -0.5 / dim, 0.5 / dim)  # word2vec's start: small, and
        nn.init.zeros_(self.emb_out.weight)  # zero context vectors

    def forward(self, centres: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        return sgns_loss(self.emb_in(centres), self.emb_out(contexts), self.emb_out(negatives))  # (B,)


def epoch_pairs(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One epoch's shuffled (centre, context) pairs: subsample, draw window widths, pair up."""
    kept = torch.rand(len(stream), generator=g, device=device) < p_keep[stream]  # (N,)
    spans = torch.randint(1, cfg.window + 1, (int(kept.sum()),), generator=g, device=device)
    centres, contexts = skipgram_pairs(stream[kept], doc[kept], spans)
    order = torch.randperm(len(centres), generator=g, device=device)
    return centres[order], contexts[order]


def train_sgns(model: SkipGram) -> tuple[list[float], float]:
    """``cfg.num_epochs`` of SGNS; returns the mean loss per pair of every step, and the seconds."""
    g = torch.Generator(device).manual_seed(cfg.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    # Negatives are drawn from a table of 10^7 ids where id i fills about noise[i] * 10^7 cells, as in
    # word2vec: a random index is faster than torch.multinomial.
    noise_table = torch.arange(len(noise), device=device).repeat_interleave((noise * 1e7).round().long())
    losses, start, step = [], time.perf_counter(), 0
    for epoch in range(cfg.num_epochs):
        centres, contexts = epoch_pairs(g)
        num_steps = math.ceil(len(centres) / batch_size) * cfg.num_epochs
        for i in progress(range(0, len(centres), batch_size), desc=f"SGNS epoch {epoch + 1}"):
            c, o = centres[i : i + batch_size], contexts[i : i + batch_size]  # (B,), (B,)
            draw = torch.randint(len(noise_table), (len(c), cfg.num_negatives), generator=g, device=device)
            negatives = noise_table[draw]  # (B, K)
            optimizer.param_groups[0]["lr"] = cfg.lr * max(1e-4, 1 - step / num_steps)
            loss = model(c, o, negatives).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            losses.append(loss.detach() / len(c))  # a tensor: no wait for the GPU at every step
    return torch.stack(losses).tolist(), time.perf_counter() - start


torch.manual_seed(cfg.seed)
sgns = SkipGram(len(vocab), cfg.dim).to(device)
losses, seconds_sgns = train_sgns(sgns)
sgns_words_per_s = cfg.num_epochs * num_words / seconds_sgns
threads = f"{torch.get_num_threads()} torch threads" if device.type == "cpu" else device.type
final_loss = sum(losses[-max(1, len(losses) // 10) :]) / max(1, len(losses) // 10)  # the last tenth's mean
print(f"SGNS: {seconds_sgns:.1f} s, {sgns_words_per_s:,.0f} words/s ({threads}); {len(losses)} steps, loss "
      f"{losses[0]:.3f} -> {final_loss:.3f}")  # fmt: skip

# %% [markdown]
# What to notice: the loss starts at (1 + K) log 2 = 4.16 (all scores 0) and falls fast. Words per
# second count every word of the corpus, kept or not, per epoch: gensim counts the same way.
#
# ## The same corpus through gensim
#
# `gensim.models.Word2Vec` is word2vec's C code (one thread per worker, no batches: one SGD update per
# pair). Same token lists, same dimension, window, negatives, subsampling, min_count and epochs.

# %%
same = {"window": cfg.window, "min_count": cfg.min_count, "negative": cfg.num_negatives, "sample": cfg.sample}
reference = Word2Vec(vector_size=cfg.dim, sg=1, workers=cfg.gensim_workers, seed=cfg.seed, **same)
reference.build_vocab(sentences)
start = time.perf_counter()
_, raw_words = reference.train(sentences, total_examples=len(sentences), epochs=cfg.num_epochs)
seconds_gensim = time.perf_counter() - start
gensim_words_per_s = raw_words / seconds_gensim  # speeds are printed, never checked: machines differ
print(f"gensim: {seconds_gensim:.1f} s, {gensim_words_per_s:,.0f} words/s ({cfg.gensim_workers} threads): "
      f"{gensim_words_per_s / sgns_words_per_s:.1f}x ours")  # fmt: skip

# %% [markdown]
# ## How good are they? Neighbours, related pairs, analogies
#
# Both models get the same vocabulary order (ours), rows normalised to length 1, so a dot product is a
# cosine. An analogy "a : b :: c : ?" is answered by the word nearest to b - a + c, the three question
# words excluded (3CosAdd: `dlkit.metrics.analogy_accuracy`, a matrix product and an argmax). A
# question counts only when all four words are in the vocabulary.


# %%
def unit_rows(vectors: torch.Tensor) -> torch.Tensor:
    return F.normalize(vectors.float(), dim=1)


def related_minus_random(vectors: torch.Tensor, index: dict[str, int], seed: int = 0) -> float:
    """Mean cosine of the RELATED pairs in the vocabulary, minus that of random pairs of frequent words."""
    E = unit_rows(vectors)
    pairs = [pair.split() for pair in RELATED.split(",")]
    pairs = torch.tensor([(index[a], index[b]) for a, b in pairs if a in index and b in index])
    top = min(len(E), 2_000)  # random pairs among the 2,000 most frequent words (rows 2.. in our order)
    rand = torch.randint(2, top, (1_000, 2), generator=torch.Generator().manual_seed(seed))
    cos = (E[pairs[:, 0]] * E[pairs[:, 1]]).sum(1).mean() if len(pairs) else torch.tensor(0.0)
    return (cos - (E[rand[:, 0]] * E[rand[:, 1]]).sum(1).mean()).item()


ours = sgns.emb_in.weight.detach().cpu()  # (V, D)
theirs = torch.zeros_like(ours)  # gensim's vectors in our vocabulary's order
theirs[2:] = torch.from_numpy(reference.wv[vocab.itos[2:]])
questions, num_questions = read_analogies(ANALOGIES, {w: i for i, w in enumerate(vocab.itos) if i >= 2})
coverage = len(questions) / num_questions
accuracy = {"sgns": analogy_accuracy(ours, questions), "gensim": analogy_accuracy(theirs, questions)}
gensim_own, _ = reference.wv.evaluate_word_analogies(ANALOGIES, restrict_vocab=len(vocab))
related = {"sgns": related_minus_random(ours, vocab.stoi), "gensim": related_minus_random(theirs, vocab.stoi)}
print(f"analogies: {len(questions):,} of {num_questions:,} questions in the vocabulary ({coverage:.0%})")
for name, vectors in (("sgns", ours), ("gensim", theirs)):
    print(f"{name:>6}: analogy accuracy {accuracy[name]:.3f}, related - random cosine {related[name]:.3f}")
    for word in [w for w in ("good", "movie", "actor", "woman", "love") if w in vocab][:4]:
        print(f"        {word}: {', '.join(nearest_words(vectors, vocab.itos, word))}")
print(f"gensim's own evaluate_word_analogies on its vectors: {gensim_own:.3f}")

# %% [markdown]
# What to notice (full mode): about half the questions are covered, and both models answer only a few
# percent of them: reviews talk about films, not capitals, and analogies need far more text. Yet
# neighbours are good ("woman": man, lady, girl) and related pairs sit well above random ones, ours as
# far as gensim's. Our evaluation of gensim's vectors equals gensim's own `evaluate_word_analogies`.
#
# ## GloVe: vectors from 6 billion words
#
# GloVe (Pennington et al., 2014) fits vectors to a word co-occurrence matrix of Wikipedia and
# Gigaword. `load_glove()` reads Stanford's glove.6B.50d.txt when on disk, else the pip package.

# %%
glove = load_glove(max_words=cfg.glove_words or None)
lesson.uses_data("glove", glove.source)
ranking = analogy_ranking(glove.vectors, glove.index, "man", "king", "woman")  # man : king :: woman : ?
queen_rank = ranking.index(glove.index["queen"]) + 1
top5 = ", ".join(glove.words[i] for i in ranking[:5])
print(f"king - man + woman = {top5}: queen is number {queen_rank} of {len(glove.words):,}")
glove_top = min(len(glove.words), 50_000)  # candidates: the most frequent words, as gensim's restrict_vocab
glove_questions, _ = read_analogies(ANALOGIES, {w: i for i, w in enumerate(glove.words[:glove_top])})
glove_accuracy = analogy_accuracy(glove.vectors[:glove_top], glove_questions)
print(f"GloVe analogy accuracy {glove_accuracy:.3f} on {len(glove_questions):,} questions")

# %% [markdown]
# What to notice: queen comes first, of all the words. With 500 times more text than our IMDB corpus,
# GloVe answers about half the analogies (the 50,000 most frequent words as candidates).
# A 2-D picture (PCA of a few words) shows why: the man -> woman offset is nearly the same arrow as
# king -> queen, and each country sits at a similar offset from its capital.

# %%
GROUPS = {  # pairs: (man, woman), (king, queen), ...
    "gender": "man woman king queen prince princess uncle aunt actor actress",
    "capitals": "france paris italy rome japan tokyo germany berlin russia moscow",
}
groups = {name: words.split() for name, words in GROUPS.items()}
vectors = {w: glove.vector(w) for words in groups.values() for w in words}
lesson.savefig(plot_word_pairs(vectors, groups), "glove_pca")

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(range(1, len(losses) + 1), losses)
ax.set(xlabel="step", ylabel="loss per pair", title=f"SGNS on {corpus_name} ({num_words:,} words)")
lesson.savefig(fig, "sgns_loss")

# %% [markdown]
# ## What you measured
#
# The SGNS loss against its starting value; in full mode (49,996 IMDB reviews, 11.5 million words, one
# epoch) analogy accuracy and the related-vs-random gap of our vectors and gensim's (the same quality;
# gensim, updating vectors in place in C, is several times faster on a CPU: the words per second
# above); GloVe's analogies. Try `--num-epochs 5` and see analogy accuracy follow the training.

# %%
full, start_loss = not lesson.quick, (1 + cfg.num_negatives) * math.log(2)  # every score 0: sigmoid 1/2
lesson.record("onehot_lookup_max_diff", lookup_diff, max=1e-6)
lesson.record("sgns_final_loss", final_loss, max=0.8 * start_loss, chance=start_loss)
lesson.record("gensim_eval_diff", abs(gensim_own - accuracy["gensim"]), max=1e-9)  # ours = gensim's own
if full:  # quick mode trains on far too little text for analogies or related pairs: printed only
    lesson.record("analogy_coverage", coverage, min=0.4, max=1.0)
    lesson.record("sgns_analogy_acc", accuracy["sgns"], min=0.02, chance=0.0)
    lesson.record("gensim_analogy_acc", accuracy["gensim"], min=0.02, chance=0.0)
    lesson.record("sgns_related_minus_random", related["sgns"], min=0.2)
    lesson.record("gensim_related_minus_random", related["gensim"], min=0.2)
lesson.record("glove_king_queen_rank", queen_rank, min=1, max=3)
lesson.record("glove_analogy_acc", glove_accuracy, min=0.3, chance=0.0)
lesson.finish()

# %% [markdown]
# ## Exercises
# Each cell below holds a stub: read its docstring, replace `raise NotImplementedError` with your
# code, then run the check cell at the end (or `dlkit check nlp/01` in a terminal). The checks compare
# your code with autograd and `F.cosine_similarity` on small random vectors and say what is off.

# %% tags=["exercise"]
import torch


def sgns_grads(v: torch.Tensor, u: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Return `(dv, du, dn)`, the gradients of `sgns_loss(v, u, n).sum()` for v (B, D), u (B, D), n (B, K, D).

    The loss of one pair is -log s(u.v) - sum_k log s(-n_k.v), with s the sigmoid.
    Use d/dx [-log s(x)] = s(x) - 1 and the chain rule: du has v in it, dn_k has v too, and dv collects
    a term from u and one from every n_k. These are word2vec's updates. The check uses autograd.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def nearest_neighbours(vectors: torch.Tensor, word: int, k: int) -> torch.Tensor:
    """Return the ids (k,) of the k nearest neighbours of `word` by cosine similarity, nearest first.

    vectors is (V, D); leave `word` itself out. Cosine similarity is the dot product of the two vectors
    divided by both norms: normalise the rows first (`F.normalize`), or a long vector wins just for its
    length. The check uses `F.cosine_similarity`.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def analogy(vectors: torch.Tensor, a: int, b: int, c: int) -> int:
    """a is to b as c is to ?: return the id of the word closest to `unit(b) - unit(a) + unit(c)`.

    unit(x) is vectors[x] divided by its norm; closest means the highest cosine similarity, among
    the words other than a, b and c (gensim's 3CosAdd). With king - man + woman, the closest word is
    often "king" or "woman" themselves: leave the three question words out, as
    `dlkit.metrics.analogy_ranking` and gensim's `most_similar` do.
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
