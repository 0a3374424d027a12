"""The recommender's train and evaluate commands on the synthetic set (quick mode, offline, seconds)."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT

if str(ROOT) not in sys.path:  # `projects` is imported from the repository root
    sys.path.insert(0, str(ROOT))

from dlkit.errors import UserError
from projects.recommendation_system import evaluate, export, train
from projects.recommendation_system.__main__ import main as cli
from projects.recommendation_system.data import histories, synthetic_ratings
from projects.recommendation_system.models import (
    BiasedMF,
    GibbsChain,
    Ranker,
    RankerBatches,
    RateAndLike,
    ranker_loss,
    sample_wishart,
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """Every model trained once in quick mode; {model: run folder}."""
    root = tmp_path_factory.mktemp("runs")
    infos = {}
    for model in ("popularity", "itemknn", "ease", "mf", "bmf", "hybrid", "ranker"):
        infos[model] = train.main(["--quick", "--model", model, "--runs-dir", str(root), "--run-name", model])
    return root, infos


def test_every_model_trains_and_the_learned_ones_beat_popularity_on_validation(runs):
    root, infos = runs
    ndcg = {model: info["val"]["val_ndcg"] for model, info in infos.items()}
    assert ndcg["ease"] > ndcg["popularity"] + 0.03 and ndcg["itemknn"] > ndcg["popularity"] + 0.03
    assert ndcg["ranker"] > ndcg["popularity"]
    # EASE's "will rate" times Bayesian MF's "will like": the made-up stars follow tastes (0.28 vs 0.20)
    assert ndcg["hybrid"] > ndcg["ease"] + 0.03
    assert infos["hybrid"]["chosen"]["lambda"] == infos["ease"]["chosen"]["lambda"]  # the same choice
    assert infos["ease"]["chosen"]["lambda"] in (10.0, 30.0)  # chosen among the quick candidates
    assert 0.6 < infos["mf"]["val"]["val_rmse"] < 1.2  # stars: a constant 3.5 gives about 1.0
    # the same model averaged over its posterior: far better on 7,400 ratings (0.85 vs 0.96 here)
    assert infos["bmf"]["val"]["val_rmse"] < infos["mf"]["val"]["val_rmse"] - 0.05
    for model in infos:
        folder = root / model
        assert {
            "config.json",
            "checkpoint.pt",
            "metrics.csv",
            "model_info.json",
            "val_metrics.json",
            "validation.png",
        } <= {  # fmt: skip
            p.name for p in folder.iterdir()
        }
    rows = (root / "ease" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,candidate,value,") and len(rows) == 3  # one row per lambda tried
    assert rows[1].startswith("0,ease lambda 10,10.0,")
    rows = (root / "hybrid" / "metrics.csv").read_text().splitlines()  # 2 lambdas, then 3 weights
    assert [row.split(",")[1] for row in rows[1:]] == [
        "ease lambda 10", "ease lambda 30", "hybrid weight 0.25", "hybrid weight 0.5", "hybrid weight 1",
    ]  # fmt: skip


def test_evaluate_scores_the_test_part_once_with_all_metrics(runs, capsys):
    root, _ = runs
    assert evaluate.main(["--run-dir", str(root / "ease")]) == 0
    result = json.loads((root / "ease" / "test_metrics.json").read_text())
    for name in ("hr", "ndcg", "recall", "precision", "map", "coverage"):
        assert 0 < result[f"test_{name}"] <= 1
    assert result["test_hr"] >= result["test_recall"] >= result["test_ndcg"] * 0.5
    assert "ease on synthetic" in capsys.readouterr().out
    assert evaluate.main(["--run-dir", str(root / "hybrid")]) == 0
    assert 0 < json.loads((root / "hybrid" / "test_metrics.json").read_text())["test_ndcg"] <= 1
    with pytest.raises(UserError, match="cannot score a visitor"):  # known users only: not released
        export.main(["--run-dir", str(root / "hybrid"), "--out", str(root / "hybrid-release")])
    assert not (root / "hybrid-release").exists()
    assert evaluate.main(["--run-dir", str(root / "mf")]) == 0
    assert 0.6 < json.loads((root / "mf" / "test_metrics.json").read_text())["test_rmse"] < 1.2


def test_keep_best_ends_on_the_best_validation_ndcg(runs):
    root, infos = runs
    with (root / "ranker" / "metrics.csv").open() as f:
        header, *lines = [line.split(",") for line in f.read().splitlines()]
    column = header.index("val_ndcg")
    values = [float(line[column]) for line in lines]
    assert len(values) == 6  # one evaluation per epoch
    assert infos["ranker"]["val"]["val_ndcg"] == pytest.approx(max(values), abs=1e-9)


def test_bad_flags_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["train", "--quick", "--model", "nope"])
    assert exit_info.value.code == 2
    assert (
        "--model must be one of popularity, itemknn, ease, mf, bmf, hybrid, ranker" in capsys.readouterr().err
    )
    assert cli(["evaluate", "--run-dir", str(tmp_path / "missing")]) == 1
    assert "does not exist: train a model first" in capsys.readouterr().err


def test_the_ranker_adds_each_ratings_neighbour_weights_into_its_users_scores():
    ranker = Ranker(num_items=4, num_neighbours=2)
    ranker.neighbours.copy_(torch.tensor([[1, 2], [0, 3], [0, 1], [2, 1]]))
    with torch.no_grad():
        ranker.weights.copy_(torch.tensor([[0.5, 0.25], [1.0, -1.0], [2.0, 3.0], [4.0, 5.0]]))
        ranker.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.1]))
        ranker.star_logits[9] += 1.0  # five stars count more than the others
    five = float(ranker.star_weights().detach()[9])
    stars = torch.tensor([[5.0, 0.0, 3.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    # user 0: item 0 (5 stars) votes 0.5 for item 1 and 0.25 for item 2; item 2 (3 stars, weight 1)
    # votes 2 for item 0 and 3 for item 1. User 1: item 3 (1 star) votes 4 for item 2, 5 for item 1.
    expected = torch.tensor([[2.0, 0.5 * five + 3.0, 0.25 * five, 0.1], [0.0, 5.0, 4.0, 0.1]])
    assert torch.allclose(ranker(stars).detach(), expected, atol=1e-6)
    # its neighbours: the most co-rated items by cosine, never itself
    data = synthetic_ratings(num_users=40, num_items=30)
    fitted = Ranker(30, 5).init_from(histories(data, np.arange(len(data))).csr())
    assert not (fitted.neighbours == torch.arange(30)[:, None]).any()


def test_ranker_batches_hide_ratings_and_keep_every_target():
    data = synthetic_ratings(num_users=20, num_items=30)
    h = histories(data, np.arange(len(data)))
    torch.manual_seed(0)
    (x, y), *_ = RankerBatches(h, batch_size=8, dropout=0.5, seed=0)(0)
    assert x.shape == y.shape == (8, 30)
    assert ((x > 0) <= (y > 0)).all() and (x[x > 0] == y[x > 0]).all()  # input: a subset of the stars
    assert 0.3 < (x > 0).sum() / (y > 0).sum() < 0.7
    assert (y > 0).sum() > 0 and set(y.unique().tolist()) <= {0.0, *np.arange(0.5, 5.01, 0.5).tolist()}
    scores = torch.zeros(2, 4, requires_grad=True)
    targets = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    # all negatives: user 0 misses its 1 by 1, user 1 too: mean squared error per user = 1
    assert ranker_loss(0)(scores, targets).item() == pytest.approx(1.0)
    # sampled negatives estimate the sum over unrated items: unbiased for a constant score of 1 on them
    ones = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    estimates = [ranker_loss(2)(ones, torch.tensor([[1.0, 0.0, 0.0, 0.0]])).item() for _ in range(400)]
    assert np.mean(estimates) == pytest.approx(3.0, abs=0.15)  # exact: 3 unrated items, error 1 each


def test_the_ranker_can_start_from_a_dense_item_item_model():
    dense = torch.tensor(
        [[9.0, 0.5, -2.0, 0.1], [0.3, 9.0, 0.0, 1.5], [1.0, 2.0, 9.0, -3.0], [0.0, 0.2, 0.1, 9.0]]
    )
    ranker = Ranker(num_items=4, num_neighbours=2).init_from_weights(dense)
    # each row's two largest weights by absolute value, never the diagonal
    assert ranker.neighbours.tolist() == [[2, 1], [3, 0], [3, 1], [1, 2]]
    expected_weights = torch.tensor([[-2.0, 0.5], [1.5, 0.3], [-3.0, 2.0], [0.2, 0.1]])
    assert torch.equal(ranker.weights.detach(), expected_weights)
    # with M = I - 1 neighbours it scores exactly as the dense model with a zero diagonal
    full = Ranker(num_items=4, num_neighbours=3).init_from_weights(dense)
    x = torch.tensor([[5.0, 0.0, 3.0, 0.0], [0.0, 1.0, 0.0, 4.5]])
    expected = (x > 0).float() @ (dense - torch.diag(dense.diagonal()))
    assert torch.allclose(full(x).detach(), expected, atol=1e-6)


def test_mf_penalises_biases_and_factors_with_their_own_weights():
    torch.manual_seed(0)
    mf = BiasedMF(4, 5, dim=3, l2=0.1, bias_l2=0.01)
    for table in (mf.user_bias, mf.item_bias):
        torch.nn.init.normal_(table.weight)
    pairs = torch.tensor([[0, 1], [3, 4], [0, 4]])
    _, penalty = mf(pairs)
    u, i = pairs[:, 0], pairs[:, 1]
    factors = mf.user.weight[u].pow(2).sum(1) + mf.item.weight[i].pow(2).sum(1)
    biases = mf.user_bias.weight[u, 0] ** 2 + mf.item_bias.weight[i, 0] ** 2
    assert penalty.item() == pytest.approx((0.1 * factors + 0.01 * biases).mean().item(), rel=1e-6)
    assert BiasedMF(4, 5, l2=0.1).bias_l2 == 0.1  # without bias_l2: the same weight as the factors


def test_mf_learning_rate_decays_once_per_epoch(tmp_path):
    argv = ["--quick", "--model", "mf", "--num-epochs", "3", "--lr-decay", "0.5", "--runs-dir", str(tmp_path)]
    cfg = train.parse(argv)
    run = train.run_of(cfg)
    train.main(argv)
    rows = list(csv.DictReader((run.path / "metrics.csv").open()))
    assert [float(r["lr"]) for r in rows] == pytest.approx([cfg.lr, cfg.lr / 2, cfg.lr / 4])


def test_the_gibbs_draw_is_each_rows_bayesian_linear_regression_posterior():
    """Row r's draw given the other side: Normal with precision Lambda + alpha Phi_r^T Phi_r and mean
    precision^-1 (Lambda mu + alpha Phi_r^T y_r), checked against a direct solve over 20,000 draws."""
    torch.manual_seed(0)
    chain = GibbsChain(num_users=2, num_items=3, dim=2)
    chain.alpha.fill_(4.0)
    f64 = torch.float64
    mu, lam = torch.tensor([0.1, -0.2, 0.3], dtype=f64), torch.diag(torch.tensor([2.0, 1.0, 5.0], dtype=f64))
    rows = torch.tensor([0, 0, 1, 0])  # ratings of rows 0, 0, 1, 0
    other = torch.tensor([[1.0, 0.5, 9.0], [-0.3, 2.0, 9.0], [0.7, 0.7, 9.0], [0.2, -1.0, 9.0]], dtype=f64)
    target = torch.tensor([1.5, -0.5, 0.8, 0.2], dtype=f64)
    draws = torch.stack([chain.draw((mu, lam), rows, other, target, num_rows=2) for _ in range(20_000)])
    for row in (0, 1):
        phi = torch.cat([other[rows == row, :2], torch.ones(int((rows == row).sum()), 1, dtype=f64)], 1)
        precision = lam + 4.0 * phi.T @ phi  # the other side's 3rd column (its bias) is not a feature
        mean = torch.linalg.solve(precision, lam @ mu + 4.0 * phi.T @ target[rows == row])
        assert torch.allclose(draws[:, row].mean(0), mean, atol=0.02)
        assert torch.allclose(draws[:, row].T.cov(), torch.linalg.inv(precision), atol=0.01)


def test_the_wishart_sampler_has_torchs_mean_and_variance():
    torch.manual_seed(0)
    scale = torch.tensor([[2.0, 0.3, 0.0], [0.3, 0.5, -0.1], [0.0, -0.1, 1.0]], dtype=torch.float64)
    draws = torch.stack([sample_wishart(scale, 6.0) for _ in range(20_000)])
    reference = torch.distributions.Wishart(torch.tensor(6.0, dtype=torch.float64), covariance_matrix=scale)
    assert torch.allclose(draws.mean(0), reference.mean, rtol=0.03, atol=0.03)
    assert torch.allclose(draws.var(0), reference.variance, rtol=0.08, atol=0.03)
    assert (torch.linalg.eigvalsh(draws) > 0).all()  # every draw positive definite


def test_a_killed_gibbs_run_resumes_to_the_same_model(tmp_path, monkeypatch):
    argv = ["--quick", "--model", "bmf", "--sweeps", "30", "--burn-in", "10", "--runs-dir", str(tmp_path)]
    train.main([*argv, "--run-name", "whole"])
    sweep, calls = GibbsChain.sweep, {"n": 0}

    def counted(self, *args, **kwargs):  # killed at the 58th sweep: the second chain's 28th
        calls["n"] += 1
        if calls["n"] == 58 and calls.get("kill", True):
            raise KeyboardInterrupt
        return sweep(self, *args, **kwargs)

    monkeypatch.setattr(GibbsChain, "sweep", counted)
    with pytest.raises(KeyboardInterrupt):
        train.main([*argv, "--run-name", "killed"])
    calls.update(n=0, kill=False)
    checkpoint = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert checkpoint["gibbs"]["phase"] == 1 and checkpoint["gibbs"]["sweep"] == 25  # the last one saved
    info = train.main([*argv, "--run-name", "killed", "--resume"])
    assert calls["n"] == 5  # sweeps 26-30 of the second chain, not a run started over
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["model"]["table"]
    resumed = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["model"]["table"]
    assert torch.equal(whole, resumed)
    assert (
        info["val"]["val_rmse"]
        == json.loads((tmp_path / "whole" / "model_info.json").read_text())["val"]["val_rmse"]
    )
    with pytest.raises(UserError, match="holds a finished bmf run"):
        train.main([*argv, "--run-name", "killed", "--resume"])
    with pytest.raises(UserError, match="leaves no sweep to average"):
        train.main(
            ["--quick", "--model", "bmf", "--sweeps", "5", "--burn-in", "5", "--runs-dir", str(tmp_path)]
        )


def test_rate_and_like_adds_the_log_chance_of_a_liked_rating_to_eases_log_score():
    model = RateAndLike(num_users=2, num_items=3, weight=0.5, sigma=0.8)
    model.ease.copy_(torch.tensor([[0.0, 0.6, -0.2], [0.3, 0.0, 0.1], [0.2, 0.4, 0.0]]))
    model.table.copy_(torch.tensor([[4.5, 3.0, 4.0], [2.0, 3.75, 5.0]]))
    liked = 1 - torch.distributions.Normal(model.table, 0.8).cdf(torch.tensor(3.75))
    assert torch.allclose(model.liked(torch.tensor([0, 1])), liked, atol=1e-6)
    assert model.liked(torch.tensor([1]))[0, 1].item() == pytest.approx(0.5)  # predicted 3.75: a coin flip
    x = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # user 0 rated item 0; user 1 item 2 (1 star)
    rate = torch.tensor([[0.0, 0.6, -0.2], [0.2, 0.4, 0.0]]).clamp_min(1e-6).log()
    expected = rate + 0.5 * liked.clamp_min(1e-6).log()
    assert torch.allclose(model(x, torch.tensor([0, 1])), expected, atol=1e-5)
    # an item EASE does not expect (score <= 0) ranks below one it does, however likeable
    scores = model(x, torch.tensor([0, 1]))
    assert scores[0, 2] < scores[0, 1] and scores[1, 2] < scores[1, 1]
