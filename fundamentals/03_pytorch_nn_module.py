# %% [markdown]
# # 03 · nn.Module: the MLP of lesson 02, the PyTorch way
#
# In lesson 02 we wrote a two-layer network by hand: weight tensors, a forward function, gradients.
# Here the same 64 -> hidden -> 10 network on scikit-learn's digits becomes an `nn.Module`.
#
# What you will learn:
# - how a module finds its parameters (`named_parameters`), and how to count them;
# - what a `state_dict` is, and how to save and load one safely (`weights_only=True`);
# - the difference between a **parameter** (learned) and a **buffer** (state, not learned);
# - `nn.Sequential`, and why state_dict keys depend on attribute names;
# - why `model.train()` and `model.eval()` matter: dropout and batch norm behave differently;
# - a short training loop with `torch.optim.Adam`, and the test accuracy it reaches.

# %%
from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from dlkit.config import flag
from dlkit.data import load_dataset
from dlkit.lesson import Lesson, LessonConfig, exactly
from dlkit.plots import plot_curves


@dataclass
class Config(LessonConfig):
    hidden: int = flag(128, help="units in the hidden layer (128, as in lesson 02)", min=1, max=4096)
    lr: float = flag(3e-3, help="Adam's learning rate", above=0, max=1)
    batch_size: int = flag(64, help="digits per optimizer step", min=1, max=1437)
    num_epochs: int = flag(20, help="passes over the training digits", min=1, max=1000)
    dropout_p: float = flag(
        0.3, help="dropout probability in the train/eval demonstration", min=0.05, max=0.9
    )


lesson = Lesson("fundamentals/03_pytorch_nn_module", Config, quick={"num_epochs": 3})
cfg, device = lesson.cfg, lesson.device

train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
lesson.uses_data("digits", train.source)
# An MLP sees a flat vector: (N, 1, 8, 8) -> (N, 64). The whole set fits on any device.
X_train, y_train = train.x.flatten(1).to(device), train.y.to(device)
X_test, y_test = test.x.flatten(1).to(device), test.y.to(device)
X_train.shape, X_test.shape


# %% [markdown]
# ## The MLP as an nn.Module
#
# A module declares its layers in `__init__` and says how to use them in `forward`. Assigning an
# `nn.Linear` to `self.hidden` is all it takes for PyTorch to find its weight and bias.


# %%
class MLP(nn.Module):
    """64 -> num_hidden -> 10 with ReLU: the network of lesson 02, now with autograd doing backward."""

    def __init__(self, num_inputs: int = 64, num_hidden: int = 128, num_outputs: int = 10) -> None:
        super().__init__()
        self.hidden = nn.Linear(num_inputs, num_hidden)
        self.out = nn.Linear(num_hidden, num_outputs)

    def forward(self, X: torch.Tensor) -> torch.Tensor:  # (B, 64)
        H = F.relu(self.hidden(X))  # (B, num_hidden)
        return self.out(H)  # (B, 10) logits; the softmax lives in the loss


model = MLP(num_hidden=cfg.hidden).to(device)
for name, p in model.named_parameters():
    print(f"{name:<14} {tuple(p.shape)}")
num_params = sum(p.numel() for p in model.parameters())
# Two weight matrices and two bias vectors: D*H + H + H*K + K.
formula = 64 * cfg.hidden + cfg.hidden + cfg.hidden * 10 + 10
lesson.record("num_params", num_params, **exactly(formula))
model

# %% [markdown]
# What to notice: the names come from the attribute names (`hidden.weight`, `out.bias`), and
# `nn.Linear` stores its weight as (out_features, in_features), the transpose of lesson 02's `W1`, and
# computes `X @ W.T + b`. With 128 hidden units the model has 64·128 + 128 + 128·10 + 10 = 9,610
# parameters, exactly the formula. No `backward` method: autograd derives it from `forward`.
#
# ## state_dict: everything needed to rebuild the model
#
# A `state_dict` maps names to tensors. Saving it (rather than the pickled model object) means that
# loading needs only tensors, so `torch.load(..., weights_only=True)` can refuse arbitrary code.

# %%
print(list(model.state_dict().keys()))
path = lesson.run_dir / "mlp_state_dict.pt"
torch.save(model.state_dict(), path)

torch.manual_seed(cfg.seed + 1)  # a fresh model with different random weights...
fresh = MLP(num_hidden=cfg.hidden).to(device)
with torch.no_grad():
    before = (fresh(X_test) - model(X_test)).abs().max().item()
fresh.load_state_dict(torch.load(path, map_location=device, weights_only=True))  # ...until we load
with torch.no_grad():
    diff = (fresh(X_test) - model(X_test)).abs().max().item()
print(f"max abs output difference: before loading {before:.3f}, after {diff}")
lesson.record("state_dict_keys", len(model.state_dict()), **exactly(4))
lesson.record("load_max_abs_diff", diff, max=0.0)

# %% [markdown]
# What to notice: after loading, the outputs are bit-for-bit identical (difference exactly 0):
# same tensors, same operations. `map_location=device` lets a file saved on a GPU load on a CPU.
#
# ## A custom layer: parameters vs buffers
#
# Standardising the inputs needs a mean and a standard deviation per pixel. They belong to the model
# (they must be saved with it and move with `.to(device)`), but the optimiser must not change them.
# That is a **buffer**. A learned per-pixel `gain` is a **parameter**. A plain tensor attribute is
# neither: it is not saved and does not move with the model.


# %%
class Standardize(nn.Module):
    """(X - mean) / std with statistics fitted on the training set, times a learned per-feature gain."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.clone())  # saved and moved, not learned
        # Pixels that never light up in the training set have std 0: avoid dividing by it.
        self.register_buffer("std", std.clamp_min(0.1))
        self.gain = nn.Parameter(torch.ones_like(mean))  # learned
        self.note = torch.zeros(1)  # plain attribute: invisible to parameters() and state_dict()

    def forward(self, X: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, D)
        return (X - self.mean) / self.std * self.gain


standardize = Standardize(X_train.mean(0), X_train.std(0))
print("parameters():", [name for name, _ in standardize.named_parameters()])
print("buffers():   ", [name for name, _ in standardize.named_buffers()])
print("state_dict():", list(standardize.state_dict().keys()))
lesson.record("custom_layer_param_tensors", len(list(standardize.parameters())), **exactly(1))
lesson.record("custom_layer_state_dict_keys", len(standardize.state_dict()), **exactly(3))

# %% [markdown]
# What to notice: `parameters()` lists only `gain`, so the optimiser will only train that;
# `state_dict()` holds `mean`, `std` and `gain`, so a saved model standardises its inputs the same way
# when it is loaded; `note` appears nowhere (and would stay on the CPU after `.to("cuda")`).
#
# ## nn.Sequential: the same network without writing a class
#
# When `forward` just calls layers one after another, `nn.Sequential` writes it for you. Its layers are
# named `0`, `1`, `2`, so its state_dict keys differ from `MLP`'s: we copy the tensors in order.

# %%
seq = nn.Sequential(nn.Linear(64, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 10)).to(device)
print(list(seq.state_dict().keys()), "<-", list(model.state_dict().keys()))
seq.load_state_dict(dict(zip(seq.state_dict().keys(), model.state_dict().values(), strict=True)))
with torch.no_grad():
    seq_diff = (seq(X_test) - model(X_test)).abs().max().item()
lesson.record("sequential_max_abs_diff", seq_diff, max=1e-6)

# %% [markdown]
# What to notice: same weights, same outputs. `load_state_dict` is strict by default: with the wrong
# key names it raises instead of silently leaving layers random.
#
# ## Dropout: random in train mode, the identity in eval mode
#
# In train mode `nn.Dropout(p)` zeroes each unit with probability p and scales the survivors by
# 1/(1-p), so the expected activation is unchanged. In eval mode it does nothing. We feed it ones
# (so every zero in the output is a dropped unit) and then real hidden activations of the MLP.

# %%
dropout = nn.Dropout(p=cfg.dropout_p)
ones = torch.ones(1000, 100, device=device)  # (B, H): 100,000 units
dropout.train()
out1, out2 = dropout(ones), dropout(ones)
drop_fraction = (out1 == 0).float().mean().item()
kept_scale = out1[out1 != 0].mean().item()
lesson.record("dropout_drop_fraction", drop_fraction, min=cfg.dropout_p - 0.02, max=cfg.dropout_p + 0.02)
lesson.record(
    "dropout_kept_scale", kept_scale, min=1 / (1 - cfg.dropout_p) - 1e-4, max=1 / (1 - cfg.dropout_p) + 1e-4
)
lesson.record("dropout_train_passes_differ", (out1 != out2).float().mean().item(), min=0.1)
dropout.eval()
lesson.record("dropout_eval_max_abs_diff", (dropout(ones) - ones).abs().max().item(), max=0.0)

with torch.no_grad():
    H = F.relu(model.hidden(X_test))  # (N, num_hidden) real activations for the figure
    H_train_mode, H_eval_mode = dropout.train()(H), dropout.eval()(H)

# %% [markdown]
# What to notice: about p of the units are dropped, the survivors are exactly 1/(1-p), two passes in
# train mode drop different units, and in eval mode the output is the input. Forgetting
# `model.eval()` before testing would make every prediction random and a little worse.
#
# ## Batch norm: batch statistics in train mode, running statistics in eval mode
#
# `nn.BatchNorm1d` normalises each feature with the mean and variance **of the current batch** in train
# mode, and updates running estimates: `running = (1 - momentum) · running + momentum · batch_stat`.
# In eval mode it uses those running estimates, so a single sample can be normalised.

# %%
torch.manual_seed(cfg.seed)
data_mean, data_std = 5.0, 3.0
batches = [data_mean + data_std * torch.randn(256, 16, device=device) for _ in range(100)]  # (B, F)
bn = nn.BatchNorm1d(16, momentum=0.1).to(device)
bn.train()
Z = bn(batches[0])  # (256, 16)
lesson.record("bn_train_mean_abs_max", Z.mean(0).abs().max().item(), max=1e-4)
lesson.record("bn_train_std_mean", Z.std(0, unbiased=False).mean().item(), min=0.99, max=1.01)
# One step from running_mean = 0 moves it 10% of the way: about 0.1 * 5 = 0.5.
lesson.record("bn_running_mean_after_1", bn.running_mean.mean().item(), min=0.45, max=0.55)
with torch.no_grad():
    Z_eval_early = bn.eval()(batches[1])  # running stats still far from the data's
    for batch in batches[1:]:
        bn.train()(batch)
lesson.record("bn_running_mean_after_100", bn.running_mean.mean().item(), min=4.8, max=5.2)
# Eval mode after 1 batch: (X - 0.5) / sqrt(0.9 + 0.1 * 9), outputs centred near 3.4, not 0.
lesson.record("bn_eval_mean_after_1", Z_eval_early.mean().item(), min=3.0, max=3.8)

bn.eval()
with torch.no_grad():
    Z_eval = bn(batches[0])
    single = bn(batches[0][:1])  # (1, 16): fine in eval mode
lesson.record("bn_eval_vs_train_mean_abs_diff", (Z_eval - Z).abs().mean().item(), max=0.15)
lesson.record("bn_eval_single_sample_ok", float(single.shape == (1, 16)), min=1)
try:
    bn.train()(batches[0][:1])  # one sample has no batch variance
    raised = 0.0
except ValueError as error:
    print("train mode, batch of 1:", error)
    raised = 1.0
lesson.record("bn_train_batch1_raises", raised, min=1)

# %% [markdown]
# What to notice: in train mode each feature of the output has mean 0 and std 1 whatever the batch. The
# running mean starts at 0 and moves towards the data mean (5) as 1 - 0.9^n. Early in training eval
# mode normalises with wrong statistics; after 100 batches its output matches train mode's.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
kw = {"bins": 50, "alpha": 0.6}
axes[0].hist(H_train_mode.flatten().cpu(), label="train mode", **kw)
axes[0].hist(H_eval_mode.flatten().cpu(), label="eval mode (= input)", **kw)
axes[0].set(title=f"Dropout p={cfg.dropout_p} on hidden activations", xlabel="activation", yscale="log")
axes[1].hist(Z.detach().flatten().cpu(), label="train mode (batch stats)", **kw)
axes[1].hist(Z_eval_early.flatten().cpu(), label="eval mode after 1 batch", **kw)
axes[1].hist(Z_eval.flatten().cpu(), label="eval mode after 100 batches", histtype="step", bins=50)
axes[1].set(title="BatchNorm1d on N(5, 3²) features", xlabel="output")
for ax in axes:
    ax.legend(fontsize=8)
lesson.savefig(fig, "dropout_batchnorm_modes")

# %% [markdown]
# What to notice: on the left, train mode has a spike of zeros and survivors stretched by 1/(1-p);
# on the right, eval mode after one batch is far off-centre, after 100 batches it sits on train mode.
#
# ## Training the module
#
# The model we train is a `Standardize` layer followed by the `MLP`, composed with `nn.Sequential`.
# `model.parameters()` hands every learned tensor (the gain, both weights, both biases) to the optimiser;
# `model.train()` / `model.eval()` switch every submodule at once.


# %%
def train_one_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, X: torch.Tensor, y: torch.Tensor, batch_size: int
) -> float:
    """One pass over (X, y) in shuffled mini-batches; returns the mean training loss."""
    model.train()  # switches every submodule: dropout and batch norm would now use train behaviour
    losses = []
    for idx in torch.randperm(len(X), device=X.device).split(batch_size):
        loss = F.cross_entropy(model(X[idx]), y[idx])  # (B, 10) logits vs (B,) class ids
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return sum(losses) / len(losses)


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Loss and accuracy in eval mode, without building a graph."""
    model.eval()
    y_hat = model(X)  # (N, 10)
    return F.cross_entropy(y_hat, y).item(), (y_hat.argmax(1) == y).float().mean().item()


torch.manual_seed(cfg.seed)
net = nn.Sequential(standardize, MLP(num_hidden=cfg.hidden)).to(device)
optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
history = {"train loss": [], "test loss": []}
for _ in range(cfg.num_epochs):
    history["train loss"].append(train_one_epoch(net, optimizer, X_train, y_train, cfg.batch_size))
    test_loss, test_acc = evaluate(net, X_test, y_test)
    history["test loss"].append(test_loss)
print(f"epoch {cfg.num_epochs}: train loss {history['train loss'][-1]:.3f}, test loss {test_loss:.3f}")
lesson.savefig(plot_curves(history, title="MLP on digits (Adam)", xlabel="epoch"), "loss_curves")

# %% [markdown]
# What to notice: both losses fall together for the first epochs; the test loss flattens first. The
# `Standardize` statistics stayed fixed (buffers), only `gain` moved among its tensors.
#
# ## What you measured

# %%
lesson.record("gain_changed", (net[0].gain - 1).abs().max().item(), min=1e-3)
lesson.record("buffer_mean_changed", (net[0].mean - X_train.mean(0)).abs().max().item(), max=0.0)
lesson.record("test_acc", test_acc, min=0.95 if not lesson.quick else 0.85, chance=0.1)
lesson.finish()

# %% [markdown]
# ## Exercises
# Each cell below holds a stub: read its docstring, replace `raise NotImplementedError` with your
# code, then run the check cell at the end (or `dlkit check fundamentals/03` in a terminal). The
# checks load the state of `nn.Linear`, `nn.LayerNorm` or `nn.BatchNorm1d` into your module and
# compare outputs and gradients.

# %% tags=["exercise"]
import torch
from torch import nn


class MyLinear(nn.Module):
    """Write `nn.Linear` yourself: `forward(x)` maps (..., in_features) to (..., out_features).

    Store `weight` (out_features, in_features) and `bias` (out_features,) as `nn.Parameter`s, both
    drawn uniformly from [-1/sqrt(in_features), 1/sqrt(in_features)] as nn.Linear does, and return
    `x @ weight.T + bias`.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


# %% tags=["exercise"]
import torch
from torch import nn


class MyLayerNorm(nn.Module):
    """Write `nn.LayerNorm(normalized_shape)`: normalise each (..., D) vector over its last dimension.

    `(x - mean) / sqrt(var + eps) * weight + bias`, with the mean and the *biased* variance
    (`unbiased=False`) over the last dimension only, and parameters `weight` (ones) and `bias`
    (zeros) of shape (D,). Unlike batch norm it needs no running statistics: why?
    """

    def __init__(self, normalized_shape: int, eps: float = 1e-5) -> None:
        super().__init__()
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


# %% tags=["exercise"]
import torch
from torch import nn


class MyBatchNorm1d(nn.Module):
    """Write `nn.BatchNorm1d(num_features, affine=False)` for (B, F) inputs, train and eval mode.

    Register buffers `running_mean` (zeros) and `running_var` (ones). In train mode (`self.training`)
    normalise with the batch mean and biased variance, and update, without recording a graph,
    `running = (1 - momentum) * running + momentum * batch_stat` (PyTorch's running_var takes the
    *unbiased* batch variance). In eval mode normalise with the running statistics.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


# %%
lesson.check_exercises(globals())
