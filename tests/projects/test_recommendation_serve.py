"""The recommender's HTTP API: every route, and bad input answered with a status and a reason."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

if str(ROOT) not in sys.path:  # `projects` is imported from the repository root
    sys.path.insert(0, str(ROOT))

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from projects.recommendation_system import export, train
from projects.recommendation_system.serve import ServeConfig, build_app

JSON_HEADERS = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rec")
    train.main(["--quick", "--model", "ranker", "--runs-dir", str(root), "--run-name", "run"])
    assert export.main(["--run-dir", str(root / "run"), "--out", str(root / "release"), "--no-onnx"]) == 0
    return root / "release"


@pytest.fixture(scope="module")
def client(release: Path) -> Iterator[TestClient]:
    app = build_app(ServeConfig(release=str(release), device="cpu", max_liked=5, max_k=50, max_body_kb=1))
    with TestClient(app) as c:
        yield c


def test_health_and_page(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"]["name"] == "ranker"
    assert health["model"]["users"] == 240 and health["model"]["movies"] == 320
    page = client.get("/")
    assert page.status_code == 200 and "Find movies you liked" in page.text


def test_search_user_similar_and_cold_start(client):
    found = client.get("/movies/search", params={"q": "synthetic movie 12", "limit": 3}).json()["movies"]
    assert found[0]["label"] == "Synthetic movie 12 (1962)" and found[0]["movie_id"] == 13
    body = client.get("/users/3/recommendations", params={"k": 7}).json()
    assert body["user"] == 3 and len(body["recommendations"]) == 7
    assert {"movie_id", "title", "year", "label", "genres", "score"} <= set(body["recommendations"][0])
    similar = client.get("/movies/13/similar?k=4").json()
    assert similar["movie"]["movie_id"] == 13 and len(similar["similar"]) == 4
    assert 13 not in [m["movie_id"] for m in similar["similar"]]
    cold = client.post("/recommendations", json={"liked": [13, 14, 13], "k": 5}).json()
    assert cold["liked"] == [13, 14] and len(cold["recommendations"]) == 5
    assert not {13, 14} & {m["movie_id"] for m in cold["recommendations"]}
    # the same visitor through the batcher twice: the same list
    again = client.post("/recommendations", json={"liked": [14, 13], "k": 5}).json()
    assert [m["movie_id"] for m in again["recommendations"]] == [
        m["movie_id"] for m in cold["recommendations"]
    ]


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status", "reason"),
    [
        ("get", "/users/9999/recommendations", {}, 404, "user 9999 is not in this release"),
        ("get", "/users/0/recommendations", {}, 404, "its users are 1 to 240"),
        ("get", "/movies/999999/similar", {}, 404, "movie 999999 is not in the catalogue"),
        ("post", "/recommendations", {"json": {"liked": [13, 999999]}}, 404, "movie 999999"),
        ("get", "/users/3/recommendations?k=0", {}, 422, "k must be between 1 and 50"),
        ("get", "/users/3/recommendations?k=51", {}, 422, "k must be between 1 and 50"),
        ("get", "/users/3/recommendations?k=ten", {}, 422, "query.k"),
        ("get", "/users/abc/recommendations", {}, 422, "path.user_id"),
        ("get", "/movies/search?q=%20%20", {}, 422, "q is empty"),
        ("get", "/movies/search?q=" + "a" * 201, {}, 422, "at most 200 characters"),
        ("post", "/recommendations", {"json": {"liked": []}}, 422, "non-empty list"),
        ("post", "/recommendations", {"json": {"liked": [1, 2, 3, 4, 5, 6]}}, 422, "the limit is 5"),
        ("post", "/recommendations", {"json": {"liked": ["13"]}}, 422, "must be an integer"),
        ("post", "/recommendations", {"json": {"liked": [True]}}, 422, "must be an integer"),
        ("post", "/recommendations", {"json": {"liked": [13], "k": 500}}, 422, "k must be between"),
        ("post", "/recommendations", {"json": [13, 14]}, 422, "needs a list 'liked'"),
        ("post", "/recommendations", {"content": b"{not", "headers": JSON_HEADERS}, 400, "not valid JSON"),
        ("post", "/recommendations", {"content": b"liked=13"}, 415, "application/json"),
        ("post", "/recommendations", {"json": {"liked": list(range(400))}}, 413, "over the limit"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_status_and_a_reason(client, method, url, kwargs, status, reason):
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]
