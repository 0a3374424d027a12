# %% [markdown]
# # 02 · A neural network from scratch
#
# **What you will learn**
# - what a multi-layer perceptron (MLP) computes: a matrix product, a bias, a non-linearity, repeated;
# - backpropagation by hand: the chain rule applied layer by layer, from the loss back to every weight;
# - the derivatives of ReLU, sigmoid and tanh, and the gradients of the MSE and softmax cross-entropy
#   losses (and why cross-entropy needs the log-sum-exp trick);
# - how to *check* hand-written gradients: PyTorch's autograd is the oracle, in float64;
# - mini-batch stochastic gradient descent (SGD), written by hand, on real handwritten digits.
#
# No `nn.Module`, no `torch.optim`, no `loss.backward()` for the model: only tensor operations.
# Lesson 03 builds the same network with `nn.Module` and compares it with `MLPScratch` below.

# %%
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from dlkit.config import flag
from dlkit.data import load_dataset
from dlkit.lesson import Lesson, LessonConfig
from dlkit.plots import image_grid, plot_curves


@dataclass
class Config(LessonConfig):
    hidden: int = flag(128, help="units in the hidden layer", min=1, max=4096)
    activation: Literal["relu", "sigmoid", "tanh"] = flag(
        "relu", help="the hidden layer's non-linearity", choices=("relu", "sigmoid", "tanh")
    )
    num_epochs: int = flag(30, help="passes over the training digits", min=1, max=1000)
    batch_size: int = flag(32, help="digits per SGD step", min=1, max=1437)
    lr: float = flag(0.1, help="SGD step size", above=0, max=10)


lesson = Lesson("fundamentals/02_neural_network_scratch", Config, quick={"num_epochs": 4})
cfg, device = lesson.cfg, lesson.device

# %% [markdown]
# ## Activations and their derivatives
# Backpropagation needs each function's derivative with respect to its input `Z` (the
# pre-activation). All three are elementwise, so the derivative is a tensor of the same shape.


# %%
def relu(Z: torch.Tensor) -> torch.Tensor:
    return Z.clamp_min(0)


def relu_grad(Z: torch.Tensor) -> torch.Tensor:
    return (Z > 0).to(Z.dtype)  # 0 at Z == 0, the same choice autograd makes


def sigmoid(Z: torch.Tensor) -> torch.Tensor:
    return 1 / (1 + torch.exp(-Z))  # exp(-Z) = inf for very negative Z gives 0, not NaN


def sigmoid_grad(Z: torch.Tensor) -> torch.Tensor:
    S = sigmoid(Z)
    return S * (1 - S)


def tanh(Z: torch.Tensor) -> torch.Tensor:
    # (e^Z - e^-Z) / (e^Z + e^-Z) overflows for |Z| > ~89 in float32; torch.tanh is the same
    # function computed stably.
    return torch.tanh(Z)


def tanh_grad(Z: torch.Tensor) -> torch.Tensor:
    return 1 - torch.tanh(Z) ** 2


ACTIVATIONS = {"relu": (relu, relu_grad), "sigmoid": (sigmoid, sigmoid_grad), "tanh": (tanh, tanh_grad)}

# %% [markdown]
# **What to notice:** sigmoid's derivative is at most 0.25 and tanh's at most 1; both vanish for
# large `|Z|`, which is why deep sigmoid networks learn slowly. ReLU's is exactly 1 wherever the
# unit is active.
#
# ## Two losses and their gradients
# A loss turns the network output `y_hat` (B, K) into one number; backpropagation starts from its
# gradient `dL/dy_hat`, of the same shape. Both losses average over the batch, so the gradient
# carries a `1 / B`.
#
# Softmax cross-entropy on logits is `L = -mean(log_softmax(y_hat)[y])`, where
# `log_softmax(y_hat) = y_hat - log(sum(exp(y_hat)))`. Computing that log-sum-exp directly
# overflows once a logit passes ~88 in float32; subtracting the row maximum `m` first,
# `logsumexp(y_hat) = m + log(sum(exp(y_hat - m)))`, gives the same value without overflow.
# The gradient is strikingly simple: `(softmax(y_hat) - onehot(y)) / B`.


# %%
def one_hot(y: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
    return F.one_hot(y, y_hat.shape[1]).to(y_hat.dtype)  # (B, K), a 1 at each row's class


def mse_loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((y_hat - one_hot(y, y_hat)) ** 2).mean()


def mse_loss_grad(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 2 * (y_hat - one_hot(y, y_hat)) / y_hat.numel()  # the mean runs over all B * K entries


def log_softmax(y_hat: torch.Tensor) -> torch.Tensor:
    shifted = y_hat - y_hat.max(dim=1, keepdim=True).values  # (B, K), <= 0: exp never overflows
    return shifted - torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))  # y_hat - logsumexp(y_hat)


def softmax(y_hat: torch.Tensor) -> torch.Tensor:
    return torch.exp(log_softmax(y_hat))  # (B, K), each row sums to 1


def cross_entropy(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(len(y), device=y.device)
    return -log_softmax(y_hat)[rows, y].mean()  # minus the mean log-probability of the true class


def cross_entropy_grad(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (softmax(y_hat) - one_hot(y, y_hat)) / len(y)  # (B, K)


LOSSES = {"mse": (mse_loss, mse_loss_grad), "cross_entropy": (cross_entropy, cross_entropy_grad)}

# %% [markdown]
# **What to notice:** for classification, MSE compares the outputs with one-hot targets; its
# gradient `2 (y_hat - Y) / (B K)` looks much like cross-entropy's, but with the raw outputs where
# cross-entropy has probabilities.
#
# ## The network: forward, backward, SGD step
# Layer `l` computes `Z_l = A_{l-1} @ W_l + b_l` and `A_l = act(Z_l)`; the last layer stops at
# `Z_L`, the logits `y_hat`. The forward pass keeps every `A` and `Z` in a cache, because the
# backward pass needs them. Given `dZ_l = dL/dZ_l` the chain rule gives
# `dW_l = A_{l-1}^T @ dZ_l`, `db_l = sum over the batch of dZ_l`, and
# `dZ_{l-1} = (dZ_l @ W_l^T) * act'(Z_{l-1})`.


# %%
Params = dict[str, torch.Tensor]


def init_params(sizes: list[int], *, generator: torch.Generator | None = None) -> Params:
    """Weights W1..WL (fan_in, fan_out) with He init (He et al. 2015), zero biases b1..bL."""
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
        # std sqrt(2 / fan_in) keeps the activations' scale roughly constant through ReLU layers.
        params[f"W{i}"] = torch.randn(fan_in, fan_out, generator=generator) * (2 / fan_in) ** 0.5
        params[f"b{i}"] = torch.zeros(fan_out)
    return params


def forward(params: Params, X: torch.Tensor, activation: str) -> tuple[torch.Tensor, dict]:
    act, _ = ACTIVATIONS[activation]
    num_layers = len(params) // 2
    cache = {"A0": X}  # (B, D)
    A = X
    for i in range(1, num_layers + 1):
        Z = A @ params[f"W{i}"] + params[f"b{i}"]  # (B, H_i)
        A = act(Z) if i < num_layers else Z  # the last layer outputs raw logits
        cache[f"Z{i}"], cache[f"A{i}"] = Z, A
    return A, cache


def backward(params: Params, cache: dict, dy_hat: torch.Tensor, activation: str) -> Params:
    _, act_grad = ACTIVATIONS[activation]
    num_layers = len(params) // 2
    grads = {}
    dZ = dy_hat  # (B, K): the last layer has no activation
    for i in range(num_layers, 0, -1):
        grads[f"W{i}"] = cache[f"A{i - 1}"].T @ dZ  # (H_{i-1}, H_i)
        grads[f"b{i}"] = dZ.sum(dim=0)  # (H_i,): b was broadcast over the batch, so sum
        if i > 1:
            dZ = (dZ @ params[f"W{i}"].T) * act_grad(cache[f"Z{i - 1}"])  # (B, H_{i-1})
    return grads


def sgd_step(params: Params, grads: Params, lr: float) -> None:
    for name, g in grads.items():
        params[name] -= lr * g  # in place: the tensors in `params` are the model


class MLPScratch:
    """An MLP whose gradients we compute ourselves: the functions above, bundled like nn.Module."""

    def __init__(
        self, sizes: list[int], activation: str = "relu", *, generator: torch.Generator | None = None
    ) -> None:
        self.params, self.activation = init_params(sizes, generator=generator), activation
        self.cache: dict = {}
        self.grads: Params = {}

    def to(self, device: torch.device | None = None, dtype: torch.dtype | None = None) -> "MLPScratch":
        self.params = {k: v.to(device=device, dtype=dtype) for k, v in self.params.items()}
        return self

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        y_hat, self.cache = forward(self.params, X, self.activation)
        return y_hat

    def backward(self, dy_hat: torch.Tensor) -> Params:
        self.grads = backward(self.params, self.cache, dy_hat, self.activation)
        return self.grads

    def step(self, lr: float) -> None:
        sgd_step(self.params, self.grads, lr)


# %% [markdown]
# **What to notice:** `backward` mirrors `forward` in reverse, and each gradient has the shape of
# its parameter. Nothing here records a graph: a forward pass costs matrix products only.
#
# ## Real digits
# scikit-learn's 8x8 handwritten digits: 1,797 images, 80% for training. Each image becomes a
# vector of 64 pixel values in [0, 1].

# %%
train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
lesson.uses_data("digits", train.source)
X_train, y_train = train.x.flatten(1).to(device), train.y.to(device)  # (N, 64), (N,)
X_test, y_test = test.x.flatten(1).to(device), test.y.to(device)
print(f"train {tuple(X_train.shape)}, test {tuple(X_test.shape)}, classes {train.classes}")

# %% [markdown]
# ## Gradient check: autograd is the oracle
# The reference runs the same network through PyTorch's own functions (`F.linear`, `torch.relu`,
# `F.cross_entropy`, ...) and lets autograd differentiate it. In float64 the two agree to ~1e-15
# when the hand-written backward is right; a wrong index or a missing `1 / B` shows up as a
# difference many orders of magnitude larger.
# MPS has no float64, so there the check runs on the CPU.

# %%
REFERENCE_ACTS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def reference_loss(
    params: Params, X: torch.Tensor, y: torch.Tensor, activation: str, loss: str
) -> torch.Tensor:
    num_layers = len(params) // 2
    A = X
    for i in range(1, num_layers + 1):
        A = F.linear(A, params[f"W{i}"].T, params[f"b{i}"])
        A = REFERENCE_ACTS[activation](A) if i < num_layers else A
    if loss == "cross_entropy":
        return F.cross_entropy(A, y)
    return F.mse_loss(A, F.one_hot(y, A.shape[1]).to(A.dtype))


def gradient_check(X: torch.Tensor, y: torch.Tensor, sizes: list[int], activation: str, loss: str) -> float:
    """Max |hand-written - autograd| over every parameter's gradient (and the loss itself)."""
    model = MLPScratch(sizes, activation, generator=torch.Generator().manual_seed(1))
    model.to(device=X.device, dtype=torch.float64)
    loss_fn, loss_grad = LOSSES[loss]
    y_hat = model(X)
    grads = model.backward(loss_grad(y_hat, y))
    ref_params = {k: v.clone().requires_grad_() for k, v in model.params.items()}
    ref = reference_loss(ref_params, X, y, activation, loss)
    ref_grads = torch.autograd.grad(ref, list(ref_params.values()))
    diffs = [(grads[k] - g).abs().max() for k, g in zip(ref_params, ref_grads, strict=True)]
    return max([*diffs, (loss_fn(y_hat, y) - ref).abs()]).item()


check_device = torch.device("cpu") if device.type == "mps" else device
X_check, y_check = X_train[:64].to(check_device, torch.float64), y_train[:64].to(check_device)
for activation in ACTIVATIONS:
    for loss in LOSSES:
        diff = gradient_check(X_check, y_check, [64, 32, 16, 10], activation, loss)
        lesson.record(f"grad_diff_{activation}_{loss}", diff, max=1e-8)

# %% [markdown]
# **What to notice:** every combination agrees to about 1e-16, the float64 rounding error, through
# two hidden layers. In float32 (about 7 significant digits) the same check could only show
# agreement to ~1e-7, too coarse to tell a small bug from rounding: check gradients in float64.
#
# ## Training with mini-batch SGD
# Each epoch shuffles the training set, cuts it into batches of `batch_size`, and for each batch
# runs forward, the loss gradient, backward and one SGD step `W <- W - lr * dW`.


# %%
def accuracy(model: MLPScratch, X: torch.Tensor, y: torch.Tensor) -> float:
    return (model(X).argmax(dim=1) == y).float().mean().item()


def train_one_epoch(
    model: MLPScratch,
    X: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
) -> list[float]:
    """One pass over (X, y) in shuffled mini-batches; returns the loss of every batch."""
    losses = []
    order = torch.randperm(len(X), generator=generator).to(X.device)
    for start in range(0, len(X), batch_size):
        idx = order[start : start + batch_size]
        y_hat = model(X[idx])  # (B, 10)
        losses.append(cross_entropy(y_hat, y[idx]).item())
        model.backward(cross_entropy_grad(y_hat, y[idx]))
        model.step(lr)
    return losses


generator = torch.Generator().manual_seed(cfg.seed)
model = MLPScratch([64, cfg.hidden, 10], cfg.activation, generator=generator).to(device)
batch_losses, epoch_losses, test_accs = [], [], []
for epoch in range(1, cfg.num_epochs + 1):
    losses = train_one_epoch(model, X_train, y_train, cfg.batch_size, cfg.lr, generator)
    batch_losses += losses
    epoch_losses.append(sum(losses) / len(losses))
    test_accs.append(accuracy(model, X_test, y_test))
    print(f"epoch {epoch:3d}  train loss {epoch_losses[-1]:.4f}  test acc {test_accs[-1]:.4f}")

# %% [markdown]
# **What to notice:** with 45 batches per epoch the loss falls fast within the first epoch, then
# slowly; the per-batch loss is noisy because each batch is a different small sample.

# %%
fig = plot_curves({"per batch": batch_losses}, title="Training loss, SGD from scratch", logy=True)
steps_per_epoch = len(batch_losses) // cfg.num_epochs
epoch_ends = [steps_per_epoch * (i + 1) for i in range(cfg.num_epochs)]
fig.axes[0].plot(epoch_ends, epoch_losses, "o-", label="epoch mean")
fig.axes[0].legend()
lesson.savefig(fig, "training_loss")

y_hat = model(X_test[:16]).argmax(dim=1)
labels = [f"pred {p} / true {t}" for p, t in zip(y_hat.tolist(), y_test[:16].tolist(), strict=True)]
lesson.savefig(image_grid(X_test[:16].view(-1, 1, 8, 8), labels), "test_predictions")

# %% [markdown]
# ## What you measured
# - the hand-written gradients match autograd to float64 precision for every activation and both
#   losses (`grad_diff_*`, expected below 1e-8);
# - a 64-128-10 ReLU MLP trained with hand-written SGD: its final training loss, against
#   ln 10 = 2.30 for a model that guesses, and its test accuracy on digits (`test_acc`; at least
#   95% in full mode, where chance is 10%).

# %%
lesson.record("train_loss", epoch_losses[-1], max=0.2 if not lesson.quick else 1.0, chance=math.log(10))
lesson.record("test_acc", test_accs[-1], min=0.95 if not lesson.quick else 0.80, chance=0.1)
lesson.finish()

# %% [markdown]
# ## Exercises
# Each cell below holds a stub: read its docstring, replace `raise NotImplementedError` with your
# code, then run the check cell at the end (or `dlkit check fundamentals/02` in a terminal). The
# checks compare your code with PyTorch on small random inputs and say what is off.

# %% tags=["exercise"]
import torch


def leaky_relu_grad(Z: torch.Tensor, slope: float = 0.01) -> torch.Tensor:
    """Write the derivative of leaky ReLU, `Z if Z > 0 else slope * Z`, elementwise (shape of Z).

    Use 1 where Z > 0 and `slope` elsewhere. The check compares it with autograd on `F.leaky_relu`.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def bce_with_logits(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Write binary cross-entropy on logits, `mean(-y log sigmoid(z) - (1 - y) log(1 - sigmoid(z)))`.

    It must stay finite for logits as large as +-1000 (rewrite it with `softplus(z) = log(1 + e^z)`,
    computed as `max(z, 0) + log1p(exp(-|z|))`, like the max shift of log-softmax above). The check
    compares it with `F.binary_cross_entropy_with_logits`.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def linear_backward(
    X: torch.Tensor, W: torch.Tensor, dZ: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For `Z = X @ W + b` (X: (B, n_in), W: (n_in, n_out)), return `(dX, dW, db)` given `dZ = dL/dZ`.

    The shapes are those of X, W and b. The check compares them with autograd's.
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
