"""The sentiment of texts with a release folder: positive or negative, how sure, and why.

    python -m projects.sentiment_analyzer predict --release DIR "A great film" "Awful."
    python -m projects.sentiment_analyzer predict --release DIR --file reviews.txt     # one per line
    cat reviews.txt | python -m projects.sentiment_analyzer predict --release DIR -    # stdin, one per line
    ... --json                                                                        # machine-readable

For the n-gram models (nbsvm, baseline) the score is a sum, z = bias + one contribution per n-gram of
the text, so the words and phrases that pushed the decision each way are known exactly
(:meth:`SentimentPredictor.evidence`); predict prints the ``--top-words`` strongest of each side.
MiniLM reads words in context and has no exact attribution: it says so instead of showing one.

Input is checked before the model sees it (:func:`check_text`): an empty or whitespace-only text is
refused with the reason; a text over ``--max-chars`` is cut, with a note; bytes that are not UTF-8 are
decoded with U+FFFD for the bad bytes, with a note (binary data is refused); a text that does not look
English still gets a prediction, with a note that the model was trained on English reviews. Refused
texts are reported on stderr and the others still get their predictions (exit status 1).
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlkit import project
from dlkit.config import ConfigError, build_parser, check_config, flag
from dlkit.data import file_digest
from dlkit.errors import UserError
from dlkit.export import ReleaseError
from dlkit.text import tokenize
from projects.sentiment_analyzer.features import load_featurizer, ngram_spans, token_spans
from projects.sentiment_analyzer.models import build_from_info

__all__ = ["DEFAULT_MAX_CHARS", "PredictConfig", "SentimentPredictor", "TextRejected", "check_text"]
__all__ += ["decode_bytes", "language_note", "main"]

DEFAULT_MAX_CHARS = 20_000  # the longest IMDB review has 13,704 characters
SENTIMENT = {"neg": "negative", "pos": "positive"}  # what a person reads for each class
MIN_SHARE = 0.005  # smaller shares of z are not shown as evidence (they print as 0.00)
NO_ATTRIBUTION = (
    "{name} reads every word in the context of the others, so no exact share of the decision belongs "
    "to a single word: no words are highlighted (the n-gram models, nbsvm and baseline, show them)"
)
# Words that nearly every English text of a few words contains (and few texts in other languages do).
ENGLISH_WORDS = frozenset(
    "the a an and or but is are was were be been it its this that these those i you he she we they me my "  # noqa: SIM905
    "your his her our their of to in on at for with from by as not no so very too all just what who have "
    "has had do does did will would can could movie good bad".split()
)


class TextRejected(ValueError):
    """Input that will not be classified; ``status`` is the HTTP status that says why (415 or 422)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def decode_bytes(data: bytes) -> tuple[str, list[str]]:
    """Text of bytes read from a file or stdin, and notes: UTF-8 (a BOM is dropped); other bytes become
    U+FFFD with a note. Data with NUL bytes or mostly undecodable is refused (TextRejected 415)."""
    if b"\x00" in data:
        raise TextRejected(415, "the input holds NUL bytes: it looks like binary data, not text")
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    if bad > 0.3 * max(len(text), 1):
        raise TextRejected(
            415, f"the input is not UTF-8 text ({bad:,} of {len(text):,} characters undecodable)"
        )
    return text, [f"the input is not valid UTF-8: {bad:,} undecodable bytes were replaced by U+FFFD"]


def check_text(text: Any, max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str, list[str]]:
    """``text`` ready for the model and notes about it, or TextRejected (422) saying why not."""
    if not isinstance(text, str):
        raise TextRejected(422, f"the text must be a string, not {type(text).__name__}")
    if not text:
        raise TextRejected(422, "the text is empty: send a review to classify")
    if not text.strip():
        raise TextRejected(
            422, f"the text is only whitespace ({len(text)} characters): send a review to classify"
        )
    notes = []
    if len(text) > max_chars:
        notes.append(f"the text has {len(text):,} characters; only the first {max_chars:,} were read")
        text = text[:max_chars]
    return text, notes


def language_note(text: str) -> str | None:
    """A note when ``text`` does not look English (by its share of common English words), else None."""
    words = [w for w in tokenize(text) if w[0].isalpha()]
    if not words:
        return "the text has no words (only digits, punctuation or symbols): the prediction means little"
    english = sum(w in ENGLISH_WORDS for w in words) / len(words)
    non_ascii = sum(not w.isascii() for w in words) / len(words)
    # English reviews of 8 words or more hold 15% or more of these words (usually 30-50%).
    if (len(words) >= 8 and english < 0.15) or (english == 0 and (non_ascii > 0.3 or len(words) >= 6)):
        return (
            "the text does not look English; the model was trained on English reviews, "
            "so the prediction may mean little"
        )
    return None


class SentimentPredictor(project.ReleasePredictor):
    """A release's model, featurizer and metadata, loaded once: ``predict(texts)``.

    Safe to call from many threads: checks and featurizing run in the caller's thread, the forward
    passes one at a time (the server batches concurrent requests instead, see serve.py).
    """

    def __init__(self, model: nn.Module, metadata: dict[str, Any], device: torch.device) -> None:
        super().__init__(model, metadata, device)
        self.classes: list[str] = list(metadata["classes"])
        self.max_chars = DEFAULT_MAX_CHARS
        self.featurizer: Any = None
        self._lock = threading.Lock()

    @staticmethod
    def build_model(metadata: dict[str, Any]) -> nn.Module:
        return build_from_info(metadata)

    @classmethod
    def from_release(cls, release: str | Path, device: str | torch.device = "auto") -> SentimentPredictor:
        """The release's model and its featurizer; a missing or changed file is a one-line error."""
        try:
            predictor = super().from_release(release, device)
        except ReleaseError as e:
            raise UserError(str(e)) from e
        assert isinstance(predictor, SentimentPredictor)
        folder, metadata = Path(release), predictor.metadata
        for name, digest in metadata.get("featurizer_files", {}).items():
            path = folder / name
            if not path.is_file() or file_digest(path) != digest:
                raise UserError(
                    f"{path} is missing or corrupt (its sha256 is not the one model.json records)"
                )
        try:
            predictor.featurizer = load_featurizer(predictor.name, folder, metadata)
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"the release in {folder} has no usable vocabulary or tokenizer: {e}") from e
        return predictor

    @property
    def explains(self) -> bool:
        """Whether the model's score splits exactly into one share per n-gram (the linear models)."""
        return hasattr(self.model, "contributions")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "explains_words": self.explains}

    def prepare(self, text: Any) -> tuple[str, list[str]]:
        """The checked text and its notes (TextRejected for empty input): run before :meth:`probabilities`."""
        text, notes = check_text(text, self.max_chars)
        for note in (language_note(text), self.featurizer.truncation_note(text)):
            if note:
                notes.append(note)
        return text, notes

    @torch.inference_mode()
    def probabilities(self, texts: Sequence[str]) -> torch.Tensor:
        """Class probabilities (N, 2) of prepared ``texts``, on the CPU."""
        inputs = [t.to(self.device) for t in self.featurizer.encode(list(texts))]
        with self._lock:
            logits = self.model(*inputs)  # (N, 2)
        return logits.float().softmax(dim=1).cpu()

    @torch.inference_mode()
    def evidence(self, text: str, top: int = 5) -> dict[str, Any]:
        """The n-grams of prepared ``text`` that pushed the decision most towards each class, with their
        exact share of z = logit(pos) - logit(neg) and where they occur in ``text``:
        ``{"positive": [{"ngram", "contribution", "spans"}...], "negative": [...], "bias", "score"}``.
        For a model without exact shares (MiniLM), ``{"explanation": why not}``."""
        if not self.explains:
            return {"explanation": NO_ATTRIBUTION.format(name=self.name)}
        inputs = [t.to(self.device) for t in self.featurizer.encode([text])]
        with self._lock:
            shares, bias = self.model.contributions(*inputs)  # (1, T), (1,)
        ids, shares = inputs[0][0].cpu(), shares[0].double().cpu()
        real = ids != 0  # padding is no n-gram
        ids, shares = ids[real], shares[real]
        tokens, spans = tokenize(text), token_spans(text)

        def side(order: torch.Tensor, sign: int) -> list[dict[str, Any]]:
            picked = [k for k in order.tolist() if sign * shares[k] >= MIN_SHARE][:top]
            grams = self.featurizer.grams_of(ids[picked])
            return [
                {
                    "ngram": g,
                    "contribution": round(float(shares[k]), 4),
                    "spans": ngram_spans(tokens, spans, g),
                }
                for g, k in zip(grams, picked, strict=True)
            ]

        order = shares.argsort(descending=True)
        return {
            "positive": side(order, +1),
            "negative": side(order.flip(0), -1),
            "bias": round(float(bias.double().sum()), 4),
            "score": round(float(shares.sum() + bias.double().sum().cpu()), 4),
        }

    def answer(self, probabilities: torch.Tensor, notes: list[str]) -> dict[str, Any]:
        """One text's answer: the label, the sentiment in words, its probability, both classes'
        probabilities, the notes."""
        k = int(probabilities.argmax())
        label = self.classes[k]
        return {
            "label": label,
            "sentiment": SENTIMENT.get(label, label),
            "probability": float(probabilities[k]),
            "probabilities": dict(zip(self.classes, probabilities.tolist(), strict=True)),
            "notes": notes,
        }

    def predict(self, texts: Sequence[str], top: int = 5) -> list[dict[str, Any]]:
        """For each text, :meth:`answer`'s dict and its ``evidence``; TextRejected if one is refused."""
        prepared = [self.prepare(t) for t in texts]
        if not prepared:
            return []
        probabilities = self.probabilities([t for t, _ in prepared])
        return [
            {**self.answer(p, notes), "evidence": self.evidence(text, top)}
            for p, (text, notes) in zip(probabilities, prepared, strict=True)
        ]


# --- The command line --------------------------------------------------------------------------------


@dataclass
class PredictConfig(project.PredictConfig):
    """The sentiment of texts: arguments, --file (one text per line) or - (stdin, one per line)."""

    file: str = flag("", help="a text file, one review per line")
    max_chars: int = flag(DEFAULT_MAX_CHARS, help="longer texts are cut, with a note", min=1)
    top_words: int = flag(
        3, help="words or phrases shown that pushed each way (n-gram models)", min=0, max=50
    )


def _lines(data: bytes, where: str) -> list[tuple[str, str | Exception, list[str]]]:
    """(where, text or why not, notes) per non-blank line of ``data``, each line decoded on its own."""
    if b"\x00" in data:
        return [
            (where, TextRejected(415, "the input holds NUL bytes: it looks like binary data, not text"), [])
        ]
    lines: list[tuple[str, str | Exception, list[str]]] = []
    for i, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").splitlines(), 1):
        if raw.strip():
            try:
                text, notes = decode_bytes(raw)
                lines.append((f"{where}:{i}", text, notes))
            except TextRejected as e:
                lines.append((f"{where}:{i}", e, []))
    return lines or [(where, TextRejected(422, f"{where} holds no text (empty or only blank lines)"), [])]


def gather_inputs(texts: Sequence[str], file: str) -> list[tuple[str, str | Exception, list[str]]]:
    """(where it came from, the text or why it cannot be read, notes) for every input, in order."""
    inputs: list[tuple[str, str | Exception, list[str]]] = []
    for i, text in enumerate(texts, 1):
        if text == "-":
            inputs += _lines(sys.stdin.buffer.read(), "stdin")
        else:
            inputs.append((f"argument {i}", text, []))
    if file:
        try:
            inputs += _lines(Path(file).read_bytes(), file)
        except OSError as e:
            inputs.append((file, OSError(f"cannot read the file ({e.strerror or e})"), []))
    return inputs


def _excerpt(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def phrase(ngram: str) -> str:
    """An n-gram as a person writes it: "is superb ." -> "is superb." (tokens are joined by spaces)."""
    return re.sub(r"([(]) ", r"\1", re.sub(r" ([.,!?;:)])", r"\1", ngram))


def _print_evidence(evidence: dict[str, Any]) -> None:
    for side in ("positive", "negative"):
        words = ", ".join(
            f'"{phrase(e["ngram"])}" ({e["contribution"]:+.2f})' for e in evidence.get(side, [])
        )
        if words:
            print(f"    pushed {side}: {words}")


def parse_args(argv: Sequence[str] | None) -> tuple[PredictConfig, list[str]]:
    """The config (every flag range-checked) and the texts given as arguments."""
    parser = build_parser(PredictConfig)
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify; - reads stdin")
    given = vars(parser.parse_args(argv))
    texts = given.pop("texts")
    cfg = PredictConfig(**given)
    try:
        check_config(cfg)
    except ConfigError as e:
        parser.error(str(e))
    if not texts and not cfg.file:
        parser.error("nothing to classify: give texts as arguments, --file FILE, or - to read stdin")
    return cfg, texts


def main(argv: Sequence[str] | None = None) -> int:
    """Print each text's sentiment, probability and evidence; 0 if all were classified, 1 if not."""
    cfg, texts = parse_args(argv)
    predictor = SentimentPredictor.from_release(cfg.release, cfg.device)
    predictor.max_chars = cfg.max_chars
    results, failed = [], 0
    inputs = gather_inputs(texts, cfg.file)
    if not predictor.explains and cfg.top_words and not cfg.json:
        print(f"note: {NO_ATTRIBUTION.format(name=predictor.name)}", file=sys.stderr)
    for s in range(0, len(inputs), cfg.batch_size):
        batch = inputs[s : s + cfg.batch_size]
        slots: list[dict[str, Any]] = [{} for _ in batch]  # the answers, in input order
        ready: list[tuple[int, str, list[str]]] = []
        for k, (where, text, notes) in enumerate(batch):
            try:
                if isinstance(text, Exception):
                    raise text
                checked, more = predictor.prepare(text)
                ready.append((k, checked, notes + more))
            except (TextRejected, OSError) as e:
                failed += 1
                slots[k] = {"input": where, "error": e.detail if isinstance(e, TextRejected) else str(e)}
        probabilities = predictor.probabilities([t for _, t, _ in ready]) if ready else []
        for (k, text, notes), p in zip(ready, probabilities, strict=True):
            slots[k] = {"input": batch[k][0], "text": _excerpt(text), **predictor.answer(p, notes)}
            if cfg.top_words:
                slots[k]["evidence"] = predictor.evidence(text, cfg.top_words)
        for slot in slots:
            results.append(slot)
            if "error" in slot:
                print(f"{slot['input']}: not classified: {slot['error']}", file=sys.stderr)
            elif not cfg.json:
                print(f"{slot['sentiment']:<8s} {100 * slot['probability']:5.1f}%  {slot['text']}")
                _print_evidence(slot.get("evidence", {}))
                for note in slot["notes"]:
                    print(f"    note ({slot['input']}): {note}", file=sys.stderr)
    if cfg.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    return 1 if failed else 0
