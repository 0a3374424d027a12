# %% [markdown]
# # 05 · Transfer learning for text: a pretrained transformer, frozen and fine-tuned
#
# Lesson 04's transformer learned English from 1,000 reviews, and so learned little of it. A model
# pretrained on a billion sentences already knows what words mean and how they combine: here it is
# all-MiniLM-L6-v2, a 6-layer, 384-wide BERT (22.7 M parameters) that ships as a pip package. We look
# at how it reads text, use it frozen as a feature extractor, then fine-tune all of it, on the same
# few labelled IMDB reviews, and set both against a TF-IDF baseline trained on the same reviews.
#
# **What you will learn**
# - WordPiece: how BERT-style models cut text into sub-words, written by hand and checked against the
#   model's own tokenizer; [CLS], [SEP], padding and the attention mask;
# - mean pooling over the real tokens, unchanged by padding (checked);
# - a linear probe: frozen sentence embeddings and logistic regression, trained in seconds;
# - fine-tuning every layer with AdamW, a small learning rate for the encoder and a larger one for the
#   new head, warmup and linear decay, the head started from the probe (LP-FT).

# %%
from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import TensorDataset

from dlkit.config import flag
from dlkit.data import load_train_test, locate, synthetic_reviews
from dlkit.device import autocast, resolve_amp_dtype, seed_everything
from dlkit.lesson import Lesson, LessonConfig
from dlkit.metrics import accuracy_of
from dlkit.pretrained_text import load_text_encoder
from dlkit.train import fit, make_loader


@dataclass
class Config(LessonConfig):
    num_train: int = flag(1_000, help="labelled training reviews: few, as in lesson 04", min=2)
    num_test: int = flag(1_000, help="test reviews", min=2)
    max_len: int = flag(128, help="word pieces per review (about 100 words): a CPU budget", min=8, max=512)
    batch_size: int = 16
    num_epochs: int = flag(1, help="epochs of fine-tuning", min=1, max=20)
    lr: float = flag(5e-5, help="the encoder's peak lr: BERT's usual 2e-5..5e-5", above=0, max=1e-2)
    lr_head: float = flag(1e-3, help="the new head's peak learning rate", above=0, max=1)
    warmup: float = flag(0.1, help="share of the steps with a linearly rising learning rate", min=0, max=0.5)


QUICK = {"num_train": 128, "num_test": 160, "max_len": 48}
lesson = Lesson("nlp/05_transfer_learning", Config, quick=QUICK)
cfg, device, full = lesson.cfg, lesson.device, not lesson.quick
amp_dtype = resolve_amp_dtype(None, device)  # bf16 where it pays: a recent GPU, or a CPU with native bf16

if full or locate("imdb") is not None:  # quick mode never downloads
    train, test = load_train_test("imdb", num_train=cfg.num_train, num_test=cfg.num_test, seed=cfg.seed)
else:
    print("quick mode: IMDB is not on this machine, so this run uses SYNTHETIC reviews")
    train, test = synthetic_reviews(cfg.num_train, cfg.seed), synthetic_reviews(cfg.num_test, cfg.seed + 1)
lesson.uses_data("reviews", f"train: {train.source}; test: {test.source}")
encoder = load_text_encoder(download=full)  # the pip package; full mode may also try the hub
lesson.uses_data("weights", encoder.source)
tokenizer, vocab = encoder.tokenizer, encoder.tokenizer.vocab  # vocab: word piece -> id

# %% [markdown]
# ## WordPiece, by hand
#
# A vocabulary of 30,522 pieces covers any text: frequent words are one piece ("movie"), rare ones
# several ("un", "##bel", "##ie", "##va", "##bly": "##" marks a piece that continues a word). BERT's
# tokenizer first cleans and lower-cases the text, drops accents, and splits it at spaces and around
# every punctuation mark; then each word is cut greedily, the longest piece in the vocabulary first.


# %%
def is_punctuation(c: str) -> bool:
    """BERT counts every non-letter, non-digit ASCII character and every Unicode "P*" as punctuation."""
    return 33 <= ord(c) <= 47 or 58 <= ord(c) <= 64 or 91 <= ord(c) <= 96 or 123 <= ord(c) <= 126 or (
        unicodedata.category(c).startswith("P"))  # fmt: skip


def basic_words(text: str) -> list[str]:
    """Clean, lower-case, strip accents, split at whitespace and around each punctuation mark."""
    text = "".join(" " if c.isspace() else c for c in text if unicodedata.category(c) not in ("Cc", "Cf")
                   or c in "\t\n\r")  # fmt: skip  # control characters go, whitespace becomes spaces
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")  # é = e + a combining accent
    text = "".join(f" {c} " if is_punctuation(c) or 0x4E00 <= ord(c) <= 0x9FFF else c for c in text)
    return text.split()


def wordpiece(word: str, max_chars: int = 100) -> list[str]:
    """Greedy longest-match-first: the longest prefix in the vocabulary, then "##" + the longest next."""
    pieces, start = [], 0
    while start < len(word) and len(word) <= max_chars:
        end = len(word)
        while end > start and (word[start:end] if start == 0 else "##" + word[start:end]) not in vocab:
            end -= 1
        if end == start:  # no piece fits: the whole word is unknown
            return ["[UNK]"]
        pieces.append(word[start:end] if start == 0 else "##" + word[start:end])
        start = end
    return pieces if pieces else ["[UNK]"]


def encode_by_hand(text: str) -> list[int]:
    """[CLS] + the pieces of every word + [SEP], as ids, cut to max_len like the tokenizer does."""
    pieces = [p for word in basic_words(text) for p in wordpiece(word)][: cfg.max_len - 2]
    return [vocab["[CLS]"], *(vocab[p] for p in pieces), vocab["[SEP]"]]


sample = "I didn't like it.<br /><br />NOT AT ALL: 2/10 &amp; boring!! Unbelievably naïve."
print(tokenizer.convert_ids_to_tokens(encode_by_hand(sample)))
texts = train.texts[:500]
theirs = tokenizer(texts, truncation=True, max_length=cfg.max_len)["input_ids"]
matches = sum(encode_by_hand(t) == ids for t, ids in zip(texts, theirs, strict=True)) / len(texts)
print(f"our WordPiece gives the tokenizer's ids for {matches:.1%} of {len(texts)} reviews")
lesson.record("wordpiece_matches", matches, min=1.0)

# %% [markdown]
# What to notice: an HTML tag becomes four pieces, "didn't" three, and a rare word a few sub-words:
# nothing is ever unknown that is made of known characters. A batch is padded to its longest review;
# the **attention mask** (1 for a real token, 0 for padding) keeps every token from attending to the
# padding, and our pooling averages the last hidden states over the real tokens only. So a review
# gets the same vector alone or in a batch with longer ones:


# %%
class MiniLMClassifier(nn.Module):
    """Word-piece ids (B, T) -> (B, num_classes): the encoder's hidden states, mean-pooled, then linear."""

    def __init__(self, encoder: nn.Module, num_classes: int, pad_id: int) -> None:
        super().__init__()
        self.encoder, self.pad_id = encoder, pad_id
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, 384): the mean of the last hidden states over the real (non-pad) tokens."""
        mask = ids != self.pad_id  # (B, T)
        hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # (B, T, 384)
        return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids))


def word_pieces(texts: list[str]) -> torch.Tensor:
    """(N, T) ids, padded to the longest review (at most max_len)."""
    batch = tokenizer(texts, truncation=True, max_length=cfg.max_len, padding=True, return_tensors="pt")
    return batch["input_ids"]


seed_everything(cfg.seed)
model = MiniLMClassifier(encoder.model, len(train.classes), tokenizer.pad_token_id).to(device).eval()
with torch.no_grad():
    short, long = " ".join(train.texts[0].split()[:12]), train.texts[1]  # 12 words, and a whole review
    batch = word_pieces([short, long]).to(device)  # the short one is padded to the long one's length
    alone = model.embed(word_pieces([short]).to(device))
padding_diff = (model.embed(batch)[0] - alone[0]).abs().max().item()
print(f"the short text: {(batch[0] != tokenizer.pad_token_id).sum()} real tokens of {batch.shape[1]}; "
      f"max |in a batch - alone| = {padding_diff:.1e}")  # fmt: skip
lesson.record("padding_invariance_max_diff", padding_diff, max=1e-4)

# %% [markdown]
# ## A linear probe: frozen features, logistic regression
#
# The cheapest transfer: one forward pass per review, its pooled vector as features, and a linear
# classifier on top. Nothing of the encoder changes; training takes seconds.


# %%
@torch.no_grad()
def embed_all(texts: list[str]) -> torch.Tensor:
    """(N, 384) pooled vectors, 64 reviews at a time, in eval mode."""
    out = []
    for i in range(0, len(texts), 64):
        with autocast(device, amp_dtype):
            out.append(model.embed(word_pieces(texts[i : i + 64]).to(device)).float().cpu())
    return torch.cat(out)


start = time.perf_counter()
features = {"train": embed_all(train.texts), "test": embed_all(test.texts)}
probe = LogisticRegression(C=1.0, max_iter=2_000).fit(features["train"].numpy(), train.labels.numpy())
accuracy = {"probe": probe.score(features["test"].numpy(), test.labels.numpy())}
seconds = {"probe": time.perf_counter() - start}
tfidf = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)  # lesson 02's baseline
baseline = LogisticRegression(C=8.0, max_iter=1_000).fit(tfidf.fit_transform(train.texts), train.labels)
accuracy["tfidf"] = baseline.score(tfidf.transform(test.texts), test.labels.numpy())
print(
    f"linear probe on frozen MiniLM: {accuracy['probe']:.3f}; TF-IDF, same reviews: {accuracy['tfidf']:.3f}"
)

# %% [markdown]
# ## Fine-tuning every layer
#
# Now the encoder trains too, but gently: BERT's recipe is AdamW with a learning rate of a few 1e-5
# for the pretrained weights (larger steps wreck what pretraining learned), a warmup over the first
# tenth of the steps, then a linear decay to zero. The new head gets a larger learning rate, and it
# starts from the probe's weights: a random head would send large, random gradients into the encoder
# at the first steps (Kumar et al., 2022, call the recipe LP-FT).

# %%
half = torch.tensor([[-0.5], [0.5]])  # two logits whose difference is the probe's one: same predictions
with torch.no_grad():
    model.head.weight.copy_(half * torch.tensor(probe.coef_, dtype=torch.float32))  # (2, 384)
    model.head.bias.copy_(half[:, 0] * float(probe.intercept_[0]))
groups = [{"params": model.encoder.parameters(), "lr": cfg.lr}]
groups.append({"params": model.head.parameters(), "lr": cfg.lr_head})
optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
loader = make_loader(TensorDataset(word_pieces(train.texts), train.labels), cfg.batch_size, shuffle=True)
total = cfg.num_epochs * len(loader)
warmup_steps = max(1, round(cfg.warmup * total))
scheduler = LambdaLR(
    optimizer, lambda step: min((step + 1) / warmup_steps, (total - step) / (total - warmup_steps))
)
start = time.perf_counter()
history = fit(model, optimizer, loader, loss_fn=F.cross_entropy, num_epochs=cfg.num_epochs, device=device,
              scheduler=scheduler, scheduler_interval="batch", clip_grad_norm=1.0)  # fmt: skip
seconds["finetune"] = seconds["probe"] + time.perf_counter() - start
accuracy["finetune"] = accuracy_of(
    model, word_pieces(test.texts), test.labels, batch_size=64, amp_dtype=amp_dtype
)
for way in ("tfidf", "probe", "finetune"):
    print(
        f"{way:<9} test accuracy {accuracy[way]:.3f}"
        + (f"  ({seconds[way]:.0f} s)" if way in seconds else "")
    )

# %% [markdown]
# What to notice: in full mode both ways of using MiniLM are far above lesson 04's transformer trained
# from scratch on the same 1,000 reviews: it knew English before it saw a review. Fine-tuning costs a
# forward and a backward pass through 22.7 M parameters per review per epoch, against one forward
# pass for the probe: on a CPU it gets one epoch. With all 25,000 reviews and a GPU
# (`--num-train 25000 --num-test 25000 --num-epochs 2 --max-len 256`) it passes 0.9.
#
# ## What you measured
#
# Our WordPiece equals the model's tokenizer; pooling ignores the padding; the test accuracy of the
# linear probe and of the fine-tuned model, against the TF-IDF baseline on the same reviews.

# %%
lesson.record("probe_acc", accuracy["probe"], min=0.75 if full else 0.6, chance=0.5)
lesson.record("finetune_acc", accuracy["finetune"], min=0.75 if full else 0.6, chance=0.5)
lesson.finish()

# %% [markdown]
# ## Exercises
# Each cell below holds a stub: read its docstring, replace `raise NotImplementedError` with your
# code, then run the check cell at the end (or `dlkit check nlp/05` in a terminal). The checks run
# your code on small random tensors and a tiny stand-in model, not on MiniLM: they take a second.

# %% tags=["exercise"]
import torch


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean-pool sentence embeddings: hidden (B, T, H) and attention_mask (B, T) -> (B, H).

    As all-MiniLM-L6-v2 does: the tokenizer's mask has 1s (real tokens) and 0s (padding); take the
    mean over the real tokens only, so that padding changes nothing. The mask comes as integers: turn
    it into hidden's dtype, and keep the count of real tokens at least 1 (an empty text gives 0s).
    """
    raise NotImplementedError


# %% tags=["exercise"]
from torch import nn


def freeze_encoder(model: nn.Module) -> list[nn.Parameter]:
    """Prepare a linear probe: freeze `model.encoder`, return the parameters to train (the head's).

    `model` has `.encoder` (pretrained) and `.head` (new, an nn.Linear). Frozen means no gradients
    (`requires_grad_(False)`) AND no dropout: put the encoder in eval mode, so that every pass gives the
    same features. The head stays trainable.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def warmup_linear_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Write transformers' `get_linear_schedule_with_warmup` as a `LambdaLR`: warmup, linear decay.

    The lr factor at step s is s / warmup_steps while s < warmup_steps, then falls linearly from 1
    to 0 at total_steps, and stays 0 after it (never negative). The lesson's version starts one step
    ahead, at (s + 1) / warmup_steps.
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
