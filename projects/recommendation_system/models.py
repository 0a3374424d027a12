"""The recommenders: three baselines in closed form, biased MF for ratings, and a ranking model.

Every ranking model is a module ``(B, I) stars -> (B, I) scores``: it reads what a user has rated (0
where nothing), so a user it never saw (a visitor who marks a few movies) is scored the same way as one
it trained on, and one ONNX graph serves all of them. Larger score = recommended first.

- :class:`Popularity`: how many users rated each item (the same list for everyone).
- :class:`ItemKNN`: cosine similarity between items' rater sets, each item's ``k`` nearest kept;
  an item's score is the sum of its similarities to what the user rated (Sarwar et al. 2001).
- :class:`EASE`: Steck 2019, a linear item-item model with a zero diagonal, in closed form:
  P = (X^T X + lambda I)^-1, B = -P / diag(P), diag(B) = 0; scores = X B.
- :class:`BiasedMF`: rating = mean + b_user + b_item + p_user . q_item (Koren et al. 2009), for RMSE.
- :class:`BayesianMF`: the same model's posterior mean, from a Gibbs sampler (:class:`GibbsChain`).
- :class:`Ranker`: see its docstring.
- :class:`RateAndLike`: EASE's "will rate" times Bayesian MF's "will like" (known users only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from dlkit.errors import UserError

__all__ = [
    "EASE",
    "MODELS",
    "BayesianMF",
    "BiasedMF",
    "GibbsChain",
    "ItemKNN",
    "Popularity",
    "Ranker",
    "RankerBatches",
    "RateAndLike",
    "build_model",
    "fit_ease",
    "fit_item_knn",
    "mf_loss",
    "ranker_loss",
    "sample_normal_wishart",
    "sample_wishart",
    "star_levels",
]

MODELS = ("popularity", "itemknn", "ease", "mf", "bmf", "hybrid", "ranker")
LIKED_STARS = 3.75  # between 3.5 and 4: a predicted rating above it counts as "liked" (>= 4 stars)


def _binary(x: torch.Tensor) -> torch.Tensor:
    return (x > 0).to(torch.float32)


class Popularity(nn.Module):
    """The most-rated items first, for everyone (the cold-start fallback of the server too)."""

    def __init__(self, num_items: int) -> None:
        super().__init__()
        self.register_buffer("counts", torch.zeros(num_items))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.counts + 0 * x  # (B, I): the input only sets the batch size


class ItemKNN(nn.Module):
    """scores = binary(x) @ S^T where S[j] holds item j's ``k`` largest cosine similarities (0 elsewhere)."""

    def __init__(self, num_items: int) -> None:
        super().__init__()
        self.register_buffer("similarity", torch.zeros(num_items, num_items))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _binary(x) @ self.similarity.T


class EASE(nn.Module):
    """scores = binary(x) @ B, B the closed-form EASE weights (see :func:`fit_ease`)."""

    def __init__(self, num_items: int) -> None:
        super().__init__()
        self.register_buffer("weights", torch.zeros(num_items, num_items))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _binary(x) @ self.weights


def _gram(interactions: sp.csr_matrix, items: torch.Tensor) -> torch.Tensor:
    """X^T X over the columns ``items`` of binary ``interactions``, dense float32 (co-occurrence counts)."""
    x = interactions[:, items.numpy()].astype("float32")
    x.data[:] = 1.0
    return torch.from_numpy((x.T @ x).toarray())


def fit_ease(interactions: sp.csr_matrix, lam: float) -> torch.Tensor:
    """EASE's B (I, I) for ``interactions`` (U, I) (nonzero = rated), with L2 weight ``lam``.

    Only items someone rated take part (the rest have empty rows and columns: B is 0 there). The
    inverse comes from a Cholesky factorisation in float32: (X^T X + lam I) is positive definite.
    """
    num_items = interactions.shape[1]
    seen = torch.from_numpy(interactions.getnnz(axis=0) > 0).nonzero().squeeze(1)
    g = _gram(interactions, seen)
    g.diagonal().add_(lam)
    p = torch.cholesky_inverse(torch.linalg.cholesky(g))
    b = p / (-p.diagonal())  # B_ij = -P_ij / P_jj
    b.fill_diagonal_(0.0)
    weights = torch.zeros(num_items, num_items)
    weights[seen.unsqueeze(1), seen.unsqueeze(0)] = b
    return weights


def fit_item_knn(interactions: sp.csr_matrix, k: int) -> torch.Tensor:
    """S (I, I): row j holds the cosine similarities of item j to its ``k`` most similar items."""
    num_items = interactions.shape[1]
    seen = torch.from_numpy(interactions.getnnz(axis=0) > 0).nonzero().squeeze(1)
    g = _gram(interactions, seen)
    norms = g.diagonal().sqrt()
    cosine = g / norms[:, None] / norms[None, :]
    cosine.fill_diagonal_(0.0)  # an item is not its own neighbour
    values, idx = torch.topk(cosine, min(k, len(seen) - 1), dim=1)
    pruned = torch.zeros_like(cosine).scatter_(1, idx, values)
    similarity = torch.zeros(num_items, num_items)
    similarity[seen.unsqueeze(1), seen.unsqueeze(0)] = pruned
    return similarity


# --- Rating prediction --------------------------------------------------------------------------------


class BiasedMF(nn.Module):
    """rating(u, i) = mean + b_u + b_i + p_u . q_i, trained on (user, item) -> stars with squared error.

    ``forward`` takes (B, 2) pairs and returns the (B,) predictions and the L2 penalty of the rows the
    batch touched (the per-example regularisation of Funk's SGD), which :func:`mf_loss` adds.
    """

    def __init__(
        self, num_users: int, num_items: int, dim: int = 50, l2: float = 0.05, bias_l2: float | None = None
    ) -> None:
        super().__init__()
        self.l2 = l2
        self.bias_l2 = l2 if bias_l2 is None else bias_l2  # biases: one number per row, less to overfit
        self.user = nn.Embedding(num_users, dim)
        self.item = nn.Embedding(num_items, dim)
        self.user_bias = nn.Embedding(num_users, 1)
        self.item_bias = nn.Embedding(num_items, 1)
        self.register_buffer("mean", torch.tensor(3.5))
        for table in (self.user, self.item):
            nn.init.normal_(table.weight, std=0.01)
        for table in (self.user_bias, self.item_bias):
            nn.init.zeros_(table.weight)

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        p, q = self.user(users), self.item(items)  # (B, dim)
        bias = self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1)
        return self.mean + bias + (p * q).sum(-1)

    def forward(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = pairs[:, 0], pairs[:, 1]
        factors = self.user(users).pow(2).sum(-1) + self.item(items).pow(2).sum(-1)
        biases = self.user_bias(users).squeeze(-1).pow(2) + self.item_bias(items).squeeze(-1).pow(2)
        return self.predict(users, items), (self.l2 * factors + self.bias_l2 * biases).mean()

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """(B, I) predicted stars of every item for ``users`` (for ranking by predicted rating)."""
        return (
            self.mean
            + self.user_bias(users)
            + self.item_bias.weight.T
            + self.user(users) @ self.item.weight.T
        )


def mf_loss(output: tuple[torch.Tensor, torch.Tensor], stars: torch.Tensor) -> torch.Tensor:
    """Mean squared error in stars plus the L2 penalty the model computed."""
    prediction, penalty = output
    return F.mse_loss(prediction.float(), stars.float()) + penalty


class BayesianMF(nn.Module):
    """Biased MF averaged over its posterior: ``table[u, i]`` = the mean over Gibbs samples of
    mean + b_u + b_i + p_u . q_i (see :class:`GibbsChain`), kept for every (user, item) pair.

    The average of many samples is not one factorisation (each sample is; their mean is not of low
    rank), so it is stored as the (U, I) table itself: 24 MB on latest-small, 90 MB on ml-1m.
    ``predict`` and ``scores`` read it like :class:`BiasedMF`'s.
    """

    def __init__(self, num_users: int, num_items: int) -> None:
        super().__init__()
        self.register_buffer("table", torch.zeros(num_users, num_items))

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.table[users, items]

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        return self.table[users]


class GibbsChain(nn.Module):
    """Bayesian biased MF (Salakhutdinov & Mnih 2008, BPMF, with a bias in each vector), sampled in PyTorch.

    rating(u, i) ~ Normal(mean + b_u + b_i + p_u . q_i, 1 / alpha). Each user's [p_u, b_u] and each
    item's [q_i, b_i] is drawn from a Normal whose mean and precision have a Normal-Wishart prior
    (beta0 = 2, nu0 = dim + 1, W0 = I), alpha from a Gamma(1, 1) prior. One :meth:`sweep` draws, in
    turn, the users' prior, every user given the items (each one a (dim + 1)-dimensional Gaussian: all
    of them at once by batched Cholesky), the items' prior, every item given the users, then alpha.
    The predictions of the sweeps after ``burn_in`` are summed in ``total`` (float64), so the posterior
    mean is ``total / kept``. Everything is a buffer: a checkpoint of this module (with the RNG states)
    continues the chain exactly.
    """

    def __init__(self, num_users: int, num_items: int, dim: int, mean: float = 3.5) -> None:
        super().__init__()
        size = dim + 1
        self.dim = dim
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float64))
        self.register_buffer("users", torch.randn(num_users, size, dtype=torch.float64) * 0.1)
        self.register_buffer("items", torch.randn(num_items, size, dtype=torch.float64) * 0.1)
        self.register_buffer("alpha", torch.tensor(2.0, dtype=torch.float64))
        self.register_buffer("total", torch.zeros(num_users, num_items, dtype=torch.float64))
        self.register_buffer("kept", torch.tensor(0, dtype=torch.int64))
        self.users[:, dim] = 0.0
        self.items[:, dim] = 0.0

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """This sample's predictions for the (user, item) pairs."""
        u, i, d = self.users[users], self.items[items], self.dim
        return self.mean + u[:, d] + i[:, d] + (u[:, :d] * i[:, :d]).sum(1)

    @torch.no_grad()
    def sweep(self, users: torch.Tensor, items: torch.Tensor, stars: torch.Tensor, keep: bool) -> None:
        """One sweep over the ratings (users[n], items[n]) -> stars[n]; ``keep``: add its predictions."""
        stars = stars.to(torch.float64)
        d = self.dim
        prior = sample_normal_wishart(self.users)
        target = stars - self.mean - self.items[items, d]
        self.users.copy_(self.draw(prior, users, self.items[items], target, len(self.users)))
        prior = sample_normal_wishart(self.items)
        target = stars - self.mean - self.users[users, d]
        self.items.copy_(self.draw(prior, items, self.users[users], target, len(self.items)))
        residual = stars - self.predict(users, items)
        shape, rate = 1.0 + len(stars) / 2, 1.0 + residual.pow(2).sum() / 2
        self.alpha.copy_(torch.distributions.Gamma(torch.tensor(shape, dtype=torch.float64), rate).sample())
        if keep:
            self.total += (
                self.mean
                + self.users[:, d : d + 1]
                + self.items[:, d]
                + self.users[:, :d] @ self.items[:, :d].T
            )
            self.kept += 1

    def draw(
        self,
        prior: tuple[torch.Tensor, torch.Tensor],
        rows: torch.Tensor,
        other: torch.Tensor,
        target: torch.Tensor,
        num_rows: int,
    ) -> torch.Tensor:
        """A draw of every row's [factors, bias] given the other side: Bayesian linear regression per row.

        ``prior`` = (mu, Lambda), the rows' Normal prior; rating n belongs to row ``rows[n]``, sees the
        other side's factors with a 1 appended (for the bias), ``other[n]``, and the residual ``target[n]``.
        Row r's posterior: precision Lambda + alpha sum_n phi_n phi_n^T, mean = precision^-1 (Lambda mu +
        alpha sum_n phi_n target_n), over the rows of this side (``num_rows``, the users' or the items')."""
        mu, lam = prior
        n, size = num_rows, self.dim + 1
        phi = torch.cat([other[:, : self.dim], torch.ones(len(other), 1, dtype=other.dtype)], 1)
        precision = lam.expand(n, size, size).clone()
        precision.index_add_(0, rows, self.alpha * phi.unsqueeze(2) * phi.unsqueeze(1))
        rhs = (lam @ mu).expand(n, size).clone()
        rhs.index_add_(0, rows, self.alpha * phi * target.unsqueeze(1))
        chol = torch.linalg.cholesky(precision)  # precision = L L^T
        mean = torch.cholesky_solve(rhs.unsqueeze(2), chol)
        noise = torch.linalg.solve_triangular(  # L^-T z has covariance (L L^T)^-1
            chol.transpose(1, 2), torch.randn(n, size, 1, dtype=precision.dtype), upper=True
        )
        return (mean + noise).squeeze(2)

    def posterior_mean(self) -> BayesianMF:
        """The model: the average of the kept sweeps' predictions."""
        if int(self.kept) == 0:
            raise ValueError("no sweep was kept yet: run past the burn-in")
        model = BayesianMF(*self.total.shape)
        model.table.copy_((self.total / self.kept).to(torch.float32))
        return model


def sample_normal_wishart(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A draw of (mu, Lambda) given the rows ``theta`` (N, D), under the Normal-Wishart prior
    mu0 = 0, beta0 = 2, nu0 = D, W0 = I (BPMF's hyperprior)."""
    n, size = theta.shape
    beta0, nu0 = 2.0, float(size)
    bar = theta.mean(0)
    centred = theta - bar
    w_inv = (
        torch.eye(size, dtype=theta.dtype)
        + centred.T @ centred
        + beta0 * n / (beta0 + n) * torch.outer(bar, bar)
    )
    w = torch.linalg.inv(w_inv)
    lam = sample_wishart((w + w.T) / 2, nu0 + n)
    cov = torch.linalg.inv((beta0 + n) * lam)
    mu = torch.distributions.MultivariateNormal(
        n * bar / (beta0 + n), covariance_matrix=(cov + cov.T) / 2
    ).sample()
    return mu, lam


def sample_wishart(scale: torch.Tensor, df: float) -> torch.Tensor:
    """A draw of Wishart(scale, df) by Bartlett's decomposition: L A A^T L^T, L = cholesky(scale), A lower
    triangular with sqrt(chi2(df - i)) on the diagonal and N(0, 1) below. (torch.distributions.Wishart
    warns "Singular sample detected" on good samples in torch 2.14 and draws them again.)"""
    size = scale.shape[0]
    half_dof = (df - torch.arange(size, dtype=scale.dtype)) / 2
    chi2 = 2.0 * torch.distributions.Gamma(half_dof, torch.ones_like(half_dof)).sample()  # 2 Gamma(k/2, 1)
    a = torch.randn(size, size, dtype=scale.dtype).tril(-1) + torch.diag(chi2.sqrt())
    la = torch.linalg.cholesky(scale) @ a
    return la @ la.T


class RateAndLike(nn.Module):
    """P(relevant) = P(will rate) x P(will like | rated), each from the model that knows it.

    Relevant means rated 4 stars or more. EASE sees only *whether* a user rated a movie, so it answers
    the first question; Bayesian biased MF (``bmf``, the posterior-mean table) predicts the stars, so
    it answers the second: P(liked) = P(Normal(table[u, j], sigma) > 3.75), sigma its validation RMSE.

        score(u, j) = log max(EASE(x_u)_j, 1e-6) + weight * log P(liked)

    ``weight`` is chosen on validation. The MF half has a row per known user only: the model scores
    the users it was fitted on (``forward(x, users)``), not a visitor, and is evaluated, not exported.
    """

    def __init__(self, num_users: int, num_items: int, weight: float = 0.5, sigma: float = 0.86) -> None:
        super().__init__()
        self.weight, self.sigma = weight, sigma
        self.register_buffer("ease", torch.zeros(num_items, num_items))
        self.register_buffer("table", torch.zeros(num_users, num_items))

    def liked(self, users: torch.Tensor) -> torch.Tensor:
        """(B, I) P(rating >= 4 stars) for ``users``, from MF's predicted stars and its error."""
        return 0.5 * torch.erfc((LIKED_STARS - self.table[users]) / (self.sigma * math.sqrt(2.0)))

    def forward(self, x: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        rate = (_binary(x) @ self.ease).clamp_min(1e-6).log()
        return rate + self.weight * self.liked(users).clamp_min(1e-6).log()


# --- The ranking model -------------------------------------------------------------------------------

NUM_STAR_LEVELS = 10  # 0.5, 1.0, ..., 5.0 stars
SOFTPLUS_ONE = math.log(math.e - 1)  # softplus(SOFTPLUS_ONE) = 1


def star_levels(stars: torch.Tensor) -> torch.Tensor:
    """0.5 -> 0, 1.0 -> 1, ..., 5.0 -> 9 (ratings between levels round to the nearest)."""
    return (stars * 2).round().long().clamp(1, NUM_STAR_LEVELS) - 1


class Ranker(nn.Module):
    """Learned item neighbourhoods that read the stars: SLIM/EASE's item-item model, trained in PyTorch.

    score(u, j) = b_j + sum over the items i the user rated of w(stars_ui) * W[i, m], where
    ``neighbours[i, m] = j`` is one of the ``num_neighbours`` items most co-rated with i (cosine of
    their rater sets, fixed at the start); W is learned, and so is w, one weight per half-star level:
    a five-star rating says more about a taste than a one-star one (EASE reads rated / not rated).
    Items outside i's neighbourhood get nothing from i: I x M weights instead of EASE's I x I.

    ``forward`` takes (B, I) stars (0 = not rated) and adds each rating's row of W into its user's
    scores (``index_put_`` with accumulation): the cost is (ratings in the batch) x M, not B x I x I.
    """

    def __init__(self, num_items: int, num_neighbours: int = 200) -> None:
        super().__init__()
        self.register_buffer("neighbours", torch.zeros(num_items, num_neighbours, dtype=torch.int64))
        self.weights = nn.Parameter(torch.zeros(num_items, num_neighbours))
        self.star_logits = nn.Parameter(torch.zeros(NUM_STAR_LEVELS))
        self.bias = nn.Parameter(torch.zeros(num_items))

    def star_weights(self) -> torch.Tensor:
        """(10,) the weight of a rating of each level: softplus, 1 at the start for every level."""
        return F.softplus(self.star_logits + SOFTPLUS_ONE)

    def forward(self, stars: torch.Tensor) -> torch.Tensor:
        rows, items = stars.nonzero(as_tuple=True)  # (n,) each: who rated what
        weight = self.star_weights()[star_levels(stars[rows, items])]  # (n,)
        contributions = weight.unsqueeze(1) * self.weights[items]  # (n, M)
        targets = self.neighbours[items]  # (n, M) the items each rating votes for
        scores = torch.zeros_like(stars).index_put_(
            (rows.unsqueeze(1).expand_as(targets), targets), contributions.to(stars.dtype), accumulate=True
        )
        return scores + self.bias

    @torch.no_grad()
    def init_from_weights(self, weights: torch.Tensor) -> Ranker:
        """Start from a dense item-item model (I, I), e.g. EASE's closed form: each item's neighbours are
        the M items its row weights most (by absolute value), W starts at those weights, so the first
        scores are that model's restricted to M neighbours (plus the star levels, all 1 at the start)."""
        m = self.neighbours.shape[1]
        off_diagonal = weights.abs().fill_diagonal_(-1.0)  # an item is not its own neighbour
        self.neighbours.copy_(torch.topk(off_diagonal, m, dim=1).indices)
        self.weights.copy_(weights.gather(1, self.neighbours))
        return self

    @torch.no_grad()
    def init_from(self, interactions: sp.csr_matrix, chunk: int = 2048) -> Ranker:
        """Each item's neighbours: the M others with the largest cosine of their rater sets (rows of
        X^T X computed ``chunk`` items at a time, so ml-25m's 59k items fit in memory); an item is not
        its own neighbour. Items with fewer co-rated items get neighbours of similarity 0."""
        x = interactions.astype("float32").tocsc()
        x.data[:] = 1.0
        norms = torch.from_numpy(np.sqrt(np.asarray(x.sum(axis=0)).ravel())).clamp_min(1.0)
        xt = x.T.tocsr()
        num_items, m = self.neighbours.shape
        for start in range(0, num_items, chunk):
            stop = min(start + chunk, num_items)
            gram = torch.from_numpy((xt[start:stop] @ x).toarray())  # (chunk, I) co-rating counts
            cosine = gram / norms[start:stop, None] / norms[None, :]
            cosine[torch.arange(stop - start), torch.arange(start, stop)] = -1.0  # not itself
            self.neighbours[start:stop] = torch.topk(cosine, m, dim=1).indices
        return self


def ranker_loss(num_negatives: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Squared error to 1 on every rated item (``targets``: stars, > 0 where rated) and to 0 on the
    others (EASE's and iALS's objective), per user, averaged over the batch; the sum over the unrated
    items is estimated from ``num_negatives`` items sampled uniformly on the scores' device, scaled by
    I / num_negatives (0 or >= I: all of them, exactly)."""

    def loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        scores = scores.float()
        rated = targets > 0
        positive = ((scores - 1.0) ** 2 * rated).sum(1)
        num_items = scores.shape[1]
        if 0 < num_negatives < num_items:
            sampled = torch.randint(num_items, (num_negatives,), device=scores.device)
            negative = (scores[:, sampled] ** 2 * ~rated[:, sampled]).sum(1) * (num_items / num_negatives)
        else:
            negative = (scores**2 * ~rated).sum(1)
        return (positive + negative).mean()

    return loss


class RankerBatches:
    """``epoch -> batches`` of (stars with some ratings hidden, targets), built on the data's device.

    Each user's ratings are a (U, I) row held as CSR tensors on the device; a batch is ``batch_size``
    users (this process's share of them under torchrun: the order is the same on every process),
    their stars with each rating hidden with probability ``dropout`` (a denoising input, as in
    Mult-DAE), and the targets: the stars of every rating, hidden or not.
    """

    def __init__(self, histories: Any, batch_size: int, dropout: float, seed: int = 0) -> None:
        self.indptr, self.items, self.ratings = histories.indptr, histories.items, histories.ratings
        self.num_items, self.batch_size, self.dropout, self.seed = (
            histories.num_items,
            batch_size,
            dropout,
            seed,
        )
        counts = self.indptr[1:] - self.indptr[:-1]
        self.users = torch.nonzero(counts > 0).squeeze(1)

    def __len__(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def __call__(self, epoch: int) -> _EpochBatches:
        """The batches of ``epoch``, each built when the loop asks for it (one epoch of ml-25m's users
        built at once would be 2,540 dense (64, 59,047) pairs: 77 GB)."""
        from dlkit.train import get_rank, get_world_size

        order = torch.randperm(
            len(self.users), generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        )
        rank, world = get_rank(), get_world_size()
        chunks = [
            self.users[chunk.to(self.users.device)][rank::world] for chunk in order.split(self.batch_size)
        ]
        return _EpochBatches(self._batch, chunks)

    def _batch(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.items.device
        starts, counts = self.indptr[users], self.indptr[users + 1] - self.indptr[users]
        rows = torch.repeat_interleave(torch.arange(len(users), device=device), counts)
        first = torch.repeat_interleave(starts - (torch.cumsum(counts, 0) - counts), counts)
        idx = first + torch.arange(int(counts.sum()), device=device)
        items, stars = self.items[idx], self.ratings[idx]
        targets = torch.zeros(len(users), self.num_items, device=device)
        targets[rows, items] = stars  # every rating, hidden or not: the loss decides what counts
        keep = torch.rand(len(idx), device=device) >= self.dropout
        x = torch.zeros(len(users), self.num_items, device=device)
        x[rows[keep], items[keep]] = stars[keep]
        return x, targets


class _EpochBatches:
    """One epoch of batches with a length (train_loop counts its steps), each made when iterated to."""

    def __init__(
        self, make: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], chunks: list
    ) -> None:
        self.make, self.chunks = make, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return (self.make(users) for users in self.chunks)


def build_model(info: dict[str, Any]) -> nn.Module:
    """The untrained module of model_info.json / model.json ``{"model": name, "kwargs": {...}}``."""
    name, kwargs = info["model"], info.get("kwargs", {})
    builders = {"popularity": Popularity, "itemknn": ItemKNN, "ease": EASE, "mf": BiasedMF, "bmf": BayesianMF,
                "hybrid": RateAndLike, "ranker": Ranker}  # fmt: skip
    if name not in builders:
        raise UserError(f"unknown model {name!r}: one of {', '.join(builders)}")
    return builders[name](**kwargs)
