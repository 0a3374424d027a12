"""The sentiment of texts with a release folder: a label (neg/pos) and its probability.

    python -m projects.sentiment_analyzer predict --release DIR "A great film" "Awful."
    python -m projects.sentiment_analyzer predict --release DIR --file reviews.txt     # one per line
    cat reviews.txt | python -m projects.sentiment_analyzer predict --release DIR -    # stdin, one per line
    ... --json                                                                        # machine-readable

Input is checked before the model sees it (:func:`check_text`): an empty or whitespace-only text is
refused with the reason; a text over ``--max-chars`` is cut, with a note; bytes that are not UTF-8 are
decoded with U+FFFD for the bad bytes, with a note (binary data is refused); a text that does not look
English still gets a prediction, with a note that the model was trained on English reviews. Refused
texts are reported on stderr and the others still get their predictions (exit status 1).

:class:`Predictor` loads a release once and classifies lists of texts; the server shares it.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlkit.config import build_parser
from dlkit.data import file_digest
from dlkit.device import get_device
from dlkit.export import ReleaseError, load_release
from dlkit.text import tokenize
from projects.sentiment_analyzer.features import load_featurizer
from projects.sentiment_analyzer.models import build_model

__all__ = ["DEFAULT_MAX_CHARS", "PredictConfig", "Predictor", "TextRejected", "check_text", "decode_bytes"]
__all__ += ["language_note", "main"]

DEFAULT_MAX_CHARS = 20_000  # the longest IMDB review has 13,704 characters
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


def build_from_metadata(metadata: dict[str, Any]) -> nn.Module:
    """The untrained architecture a release's model.json describes."""
    arch = metadata["architecture"]
    return build_model(arch["name"], **arch["kwargs"])


class Predictor:
    """A release's model, featurizer and metadata, loaded once: ``predict(texts)``.

    Safe to call from many threads: checks and featurizing run in the caller's thread, the forward
    passes one at a time (the server batches concurrent requests instead, see serve.py).
    """

    def __init__(
        self, model: nn.Module, featurizer: Any, metadata: dict[str, Any], device: str | torch.device = "cpu"
    ) -> None:
        self.device = get_device(str(device))
        self.model = model.to(self.device).eval()
        self.featurizer, self.metadata = featurizer, metadata
        self.classes: list[str] = list(metadata["classes"])
        self.max_chars = DEFAULT_MAX_CHARS
        self._lock = threading.Lock()

    @classmethod
    def from_release(cls, release_dir: str | Path, device: str | torch.device = "cpu") -> Predictor:
        release_dir = Path(release_dir)
        model, metadata = load_release(release_dir, build_from_metadata)
        for name, digest in metadata.get("featurizer_files", {}).items():
            path = release_dir / name
            if not path.is_file() or file_digest(path) != digest:
                raise ReleaseError(
                    f"{path} is missing or corrupt (its sha256 is not the one model.json records)"
                )
        try:
            featurizer = load_featurizer(metadata["architecture"]["name"], release_dir, metadata)
        except (OSError, ValueError, KeyError) as e:
            raise ReleaseError(
                f"the release in {release_dir} has no usable vocabulary or tokenizer: {e}"
            ) from e
        metadata["release_dir"] = str(release_dir)
        return cls(model, featurizer, metadata, device)

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

    def answer(self, probabilities: torch.Tensor, notes: list[str]) -> dict[str, Any]:
        """One text's answer: the label, its probability, both classes' probabilities, the notes."""
        k = int(probabilities.argmax())
        return {
            "label": self.classes[k],
            "probability": float(probabilities[k]),
            "probabilities": dict(zip(self.classes, probabilities.tolist(), strict=True)),
            "notes": notes,
        }

    def predict(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """For each text, :meth:`answer`'s dict; TextRejected if one of them is refused."""
        prepared = [self.prepare(t) for t in texts]
        if not prepared:
            return []
        probabilities = self.probabilities([t for t, _ in prepared])
        return [self.answer(p, notes) for p, (_, notes) in zip(probabilities, prepared, strict=True)]

    @property
    def name(self) -> dict[str, Any]:
        meta = self.metadata
        return {
            "architecture": meta["architecture"]["name"],
            "dataset": meta.get("dataset"),
            "created": meta.get("created"),
        }

    def describe(self) -> dict[str, Any]:
        """What /health reports: the release's metadata without the bulky parts."""
        skip = {"weights", "trained_from", "architecture", "featurizer_files"}
        return {**self.name, **{k: v for k, v in self.metadata.items() if k not in skip}}


# --- The command line --------------------------------------------------------------------------------


@dataclass
class PredictConfig:
    """The sentiment of texts: arguments, --file (one text per line) or - (stdin, one per line)."""

    release: str = field(default="", metadata={"help": "a release folder written by `export` (required)"})
    file: str | None = field(default=None, metadata={"help": "a text file, one review per line"})
    max_chars: int = field(default=DEFAULT_MAX_CHARS, metadata={"help": "longer texts are cut, with a note"})
    batch_size: int = 64
    json: bool = field(default=False, metadata={"help": "print JSON instead of one line per text"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, or auto"})


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


def gather_inputs(texts: Sequence[str], file: str | None) -> list[tuple[str, str | Exception, list[str]]]:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Print each text's label and probability; 0 if all were classified, 1 if some were refused."""
    parser = build_parser(PredictConfig)
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify; - reads stdin")
    given = vars(parser.parse_args(argv))
    texts = given.pop("texts")
    cfg = PredictConfig(**given)
    if not cfg.release:
        parser.error(
            "--release is required (a folder written by `python -m projects.sentiment_analyzer export`)"
        )
    if not texts and not cfg.file:
        parser.error("nothing to classify: give texts as arguments, --file FILE, or - to read stdin")
    try:
        predictor = Predictor.from_release(cfg.release, cfg.device)
    except ReleaseError as e:
        parser.exit(2, f"predict: {e}\n")
    predictor.max_chars = cfg.max_chars
    results, failed = [], 0
    inputs = gather_inputs(texts, cfg.file)
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
        for slot in slots:
            results.append(slot)
            if "error" in slot:
                print(f"{slot['input']}: not classified: {slot['error']}", file=sys.stderr)
            elif not cfg.json:
                print(f"{slot['label']} {slot['probability']:.3f}  {slot['text']}")
                for note in slot["notes"]:
                    print(f"  note ({slot['input']}): {note}", file=sys.stderr)
    if cfg.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
