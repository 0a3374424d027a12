"""Export and predict: the release holds tensors and JSON only, ONNX agrees with PyTorch, and the lists
leave out what a user has seen and show titles with their years."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT

if str(ROOT) not in sys.path:  # `projects` is imported from the repository root
    sys.path.insert(0, str(ROOT))

from dlkit.errors import UserError
from dlkit.export import onnx_session
from projects.recommendation_system import export, predict, train
from projects.recommendation_system.predict import LIKED_STARS, Recommender, UnknownId


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rec")
    out = {}
    for model in ("ranker", "ease", "mf"):
        train.main(["--quick", "--model", model, "--runs-dir", str(root), "--run-name", model])
    for model in ("ranker", "ease"):
        assert export.main(["--run-dir", str(root / model), "--out", str(root / f"{model}-release")]) == 0
        out[model] = root / f"{model}-release"
    out["mf_run"] = root / "mf"
    return out


def test_the_release_is_tensors_and_json_with_the_catalogue(releases):
    folder = releases["ranker"]
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.onnx", "model.safetensors"]
    meta = json.loads((folder / "model.json").read_text())
    assert meta["architecture"]["model"] == "ranker" and meta["split"] == "random"
    assert len(meta["items"]["titles"]) == meta["sizes"]["items"] == 320
    assert meta["items"]["years"][5] == 1955 and meta["items"]["movie_ids"][5] == 6
    assert meta["parity"]["onnx_max_abs_diff"] < 1e-4
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "model.safetensors"))
    assert {"user_indptr", "user_items", "user_ratings", "popularity", "scorer.weights"} <= set(tensors)
    assert int(tensors["user_indptr"][-1]) == len(tensors["user_items"]) == meta["sizes"]["ratings"]


@pytest.mark.parametrize("model", ["ranker", "ease"])
def test_onnx_scores_visitors_as_pytorch_does(releases, model):
    rec = Recommender.from_release(releases[model], "cpu")
    assert isinstance(rec, Recommender)
    rows = torch.stack([rec.user_row(1), rec.user_row(7), rec.liked_row([1, 2, 3]), rec.liked_row([300])])
    session = onnx_session(releases[model] / "model.onnx")
    got = session.run(None, {"stars": rows.numpy()})[0]
    expected = rec.model(rows).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_lists_leave_out_what_was_rated_and_read_as_titles(releases):
    rec = Recommender.from_release(releases["ranker"], "cpu")
    assert isinstance(rec, Recommender)
    seen = {rec.catalogue.movie_ids[i] for i in rec.user_row(3).nonzero().squeeze(1).tolist()}
    top = rec.for_user(3, k=20)
    assert len(top) == 20 and not seen & {m["movie_id"] for m in top}
    assert all(m["label"] == f"{m['title']} ({m['year']})" for m in top)
    scores = [m["score"] for m in top]
    assert scores == sorted(scores, reverse=True)
    liked = [top[0]["movie_id"], top[1]["movie_id"]]
    assert not set(liked) & {m["movie_id"] for m in rec.for_liked(liked, k=10)}
    similar = rec.similar(liked[0], k=5)
    assert len(similar) == 5 and liked[0] not in {m["movie_id"] for m in similar}
    assert rec.liked_row([liked[0]]).max() == LIKED_STARS
    with pytest.raises(UnknownId, match="user 9999 is not in this release: its users are 1 to 240"):
        rec.for_user(9999)
    with pytest.raises(UnknownId, match="movie 123456 is not in the catalogue"):
        rec.similar(123456)
    assert rec.search("synthetic movie 12", limit=1)[0]["title"] == "Synthetic movie 12"
    assert "users" in rec.describe() and str(releases["ranker"]) not in json.dumps(rec.describe())


def test_predict_prints_titles_and_refuses_unclear_requests(releases, capsys):
    release = str(releases["ranker"])
    assert predict.main(["--release", release, "--user", "3", "--k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("top 3 for user 3") and out[1].startswith("   1. Synthetic movie ")
    assert predict.main(["--release", release, "--liked", "synthetic movie 12", "--json"]) == 0
    captured = capsys.readouterr()
    assert "'synthetic movie 12' -> Synthetic movie 12 (1962)" in captured.err
    assert json.loads(captured.out)["liked"] == [13]
    with pytest.raises(UserError, match="one of --user"):
        predict.main(["--release", release, "--user", "3", "--similar", "x"])
    with pytest.raises(UserError, match="no movie title holds"):
        predict.main(["--release", release, "--similar", "zzzz qqqq"])
    with pytest.raises(UserError, match="user 5000 is not in this release"):
        predict.main(["--release", release, "--user", "5000"])


def test_biased_mf_is_evaluated_not_released(releases, tmp_path):
    with pytest.raises(UserError, match="biased MF predicts stars"):
        export.main(["--run-dir", str(releases["mf_run"]), "--out", str(tmp_path / "mf-release")])
    assert not (tmp_path / "mf-release").exists()
