"""The text generator's server: POST /generate streams the text, bad requests get 4xx with a reason,
/health says what a client needs (no server paths). In-process (FastAPI's TestClient); seconds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from dlkit.export import save_release
from dlkit.text import CharVocab
from projects.text_generator.model import GPT, GPTConfig
from projects.text_generator.predict import TextGenerator
from projects.text_generator.serve import PAGE, ServeConfig, build_app

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\nJULIET: the king is dead.\n"


def make_release(folder: Path) -> Path:
    """A release of an untrained small GPT for TEXT's characters (what export writes)."""
    torch.manual_seed(0)
    vocab = CharVocab.from_text(TEXT)
    config = GPTConfig(vocab_size=len(vocab), block_size=16, n_layer=1, n_head=2, n_embd=16)
    metadata = {
        "architecture": {"name": "gpt", "config": config.to_dict()},
        "vocab": vocab.to_dict(),
        "dataset": "none: untrained, for a server test",
        "metrics": {"val_loss_whole_split": 3.5},
    }
    return save_release(GPT(config), metadata, folder)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def client(release: Path) -> Iterator[TestClient]:
    cfg = ServeConfig(release=str(release), device="cpu", max_chars=200, max_prompt_chars=100, max_body_kb=4)
    with TestClient(build_app(cfg)) as client:
        yield client


def test_health_says_what_a_client_needs_and_no_paths(client: TestClient, release: Path) -> None:
    answer = client.get("/health")
    assert answer.status_code == 200
    model = answer.json()["model"]
    assert model["name"] == "gpt" and model["context_length"] == 16
    assert model["characters"] == CharVocab.from_text(TEXT).chars
    assert model["limits"] == {"max_chars": 200, "max_prompt_chars": 100}
    assert str(release) not in answer.text and str(release.parent) not in answer.text


def test_generate_streams_the_text_that_predict_makes(client: TestClient, release: Path) -> None:
    body = {"prompt": "ROMEO:", "num_chars": 60, "temperature": 0.9, "top_k": 10, "seed": 7}
    with client.stream("POST", "/generate", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert response.headers["x-seed"] == "7"
        chunks = list(response.iter_text())
    assert len(chunks) > 1  # streamed, not sent at once
    text = "".join(chunks)
    expected = TextGenerator.load(release=str(release), device="cpu").sample("ROMEO:", 60, 0.9, 10, seed=7)
    assert "ROMEO:" + text == expected[0] and len(text) == 60


def test_a_request_without_a_seed_gets_one_it_can_repeat(client: TestClient) -> None:
    first = client.post("/generate", json={"num_chars": 30})
    seed = int(first.headers["x-seed"])
    again = client.post("/generate", json={"num_chars": 30, "seed": seed})
    assert (
        first.status_code == again.status_code == 200 and first.text == again.text and len(first.text) == 30
    )


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"prompt": "Hello €uro"}, 422, "never saw"),
        ({"prompt": 5}, 422, "prompt must be a string"),
        ({"prompt": "a" * 101}, 422, "the limit is 100"),
        ({"num_chars": 201}, 422, "num_chars must be between 1 and 200"),
        ({"num_chars": 0}, 422, "num_chars must be between"),
        ({"num_chars": "ten"}, 422, "num_chars must be a whole number"),
        ({"num_chars": 2.5}, 422, "num_chars must be a whole number"),
        ({"num_chars": True}, 422, "num_chars must be a whole number"),
        ({"temperature": 0}, 422, "temperature must be between"),
        ({"top_k": 0}, 422, "top_k must be between"),
        ({"seed": -1}, 422, "seed must be between"),
        ({"prompt": "a", "length": 5}, 422, "unknown field"),
        (["ROMEO"], 422, "JSON object"),
    ],
)
def test_bad_requests_get_the_reason_and_no_text(
    client: TestClient, body: object, status: int, reason: str
) -> None:
    answer = client.post("/generate", json=body)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    assert reason in answer.json()["detail"]


def test_bodies_that_are_not_json_or_too_large(client: TestClient) -> None:
    assert (
        client.post("/generate", content=b"ROMEO", headers={"content-type": "text/plain"}).status_code == 415
    )
    assert (
        client.post("/generate", content=b"{nope", headers={"content-type": "application/json"}).status_code
        == 400
    )
    deep = b"[" * 5000 + b"]" * 5000
    assert client.post(
        "/generate", content=deep, headers={"content-type": "application/json"}
    ).status_code in (
        400,
        413,
    )
    big = json.dumps({"prompt": "a" * 5000})
    assert (
        client.post("/generate", content=big, headers={"content-type": "application/json"}).status_code == 413
    )


def test_the_page_is_served_without_outside_resources(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.text == PAGE
    assert 'id="prompt"' in page.text and 'id="generate"' in page.text
    assert 'src="http' not in page.text and 'href="http' not in page.text
