"""dlkit.optim: Muon written out equals torch.optim.Muon, its AdamW part equals torch.optim.AdamW, and the
pair trains a small network."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dlkit.checkpoint import load_checkpoint, save_checkpoint
from dlkit.optim import MuonAdamW, muon_param_groups, newton_schulz


class Tiny(nn.Module):
    """An embedding tied to the output layer, two hidden matrices (one tall, one wide), a norm."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 8)
        self.up = nn.Linear(8, 24, bias=False)
        self.down = nn.Linear(24, 8, bias=True)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 11, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.down(torch.relu(self.up(self.emb(idx))))))


def loss_of(model: nn.Module, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 11, (32,), generator=g)
    return nn.functional.cross_entropy(model(idx), (idx * 3 + 1) % 11)


def test_newton_schulz_orthogonalises():
    g = torch.randn(48, 16, generator=torch.Generator().manual_seed(0)) @ torch.diag(
        torch.logspace(-1, 1, 16)
    )
    o = newton_schulz(g).float()
    singular = torch.linalg.svdvals(o)
    assert o.shape == g.shape
    assert singular.min() > 0.5 and singular.max() < 1.3, singular  # every direction moves about equally
    u, _, vt = torch.linalg.svd(g, full_matrices=False)
    cosine = (o * (u @ vt)).sum() / (o.norm() * (u @ vt).norm())
    assert cosine > 0.95  # and it is (nearly) the polar factor U V^T
    with pytest.raises(ValueError, match="matrix"):
        newton_schulz(torch.ones(4))
    stacked = newton_schulz(torch.stack([g, g.flip(0)]))  # a stack: each matrix alone
    torch.testing.assert_close(stacked[0], newton_schulz(g), rtol=0, atol=1e-2)
    torch.testing.assert_close(stacked[1], newton_schulz(g.flip(0)), rtol=0, atol=1e-2)


def test_groups_split_hidden_matrices_from_the_rest():
    model = Tiny()
    muon, decayed, plain = muon_param_groups(model, lr=1e-3, muon_lr=0.02, weight_decay=0.1)
    assert {id(p) for p in muon["params"]} == {id(model.up.weight), id(model.down.weight)}
    assert {id(p) for p in decayed["params"]} == {id(model.emb.weight)}  # the tied head is not Muon's
    assert {id(p) for p in plain["params"]} == {
        id(model.down.bias),
        id(model.norm.weight),
        id(model.norm.bias),
    }
    assert muon["use_muon"] and muon["lr"] == 0.02 and plain["weight_decay"] == 0.0
    muon, decayed, _ = muon_param_groups(model, lr=1e-3, muon_lr=0.02, weight_decay=0.1, exclude=[model.down])
    assert {id(p) for p in muon["params"]} == {id(model.up.weight)}  # e.g. an untied output layer
    assert {id(p) for p in decayed["params"]} == {id(model.emb.weight), id(model.down.weight)}
    with pytest.raises(ValueError, match="2-D"):
        MuonAdamW([{"params": [model.norm.weight], "use_muon": True}])


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon arrived in PyTorch 2.9")
def test_equals_torch_muon_and_adamw():
    torch.manual_seed(0)
    ours_model = Tiny()
    ref_model = copy.deepcopy(ours_model)
    # torch.optim.Muon always iterates in bf16: so do we here, whatever this CPU runs fast
    ours = MuonAdamW(
        muon_param_groups(ours_model, lr=3e-3, muon_lr=0.02, weight_decay=0.1), ns_dtype="bfloat16"
    )
    muon, decayed, plain = muon_param_groups(ref_model, lr=3e-3, muon_lr=0.02, weight_decay=0.1)
    ref = [
        torch.optim.Muon(muon["params"], lr=0.02, weight_decay=0.1, adjust_lr_fn="original"),
        torch.optim.AdamW(
            [{k: v for k, v in g.items() if k != "use_muon"} for g in (decayed, plain)], foreach=False
        ),
    ]
    for step in range(5):
        for model, opts in ((ours_model, [ours]), (ref_model, ref)):
            for opt in opts:
                opt.zero_grad()
            loss_of(model, step).backward()
            for opt in opts:
                opt.step()
    for (name, a), b in zip(ours_model.named_parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_trains_and_resumes_from_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = Tiny()
    opt = MuonAdamW(muon_param_groups(model, lr=1e-2, muon_lr=0.05, weight_decay=0.0))
    first = loss_of(model, 0).item()
    for step in range(60):
        opt.zero_grad()
        loss_of(model, step).backward()
        opt.step()
        if step == 29:  # a run killed here resumes from its checkpoint to the same weights
            save_checkpoint(tmp_path / "ckpt.pt", model=model, optimizer=opt, epoch=step)
            twin = copy.deepcopy(model)
            twin_opt = MuonAdamW(muon_param_groups(twin, lr=1e-2, muon_lr=0.05, weight_decay=0.0))
            load_checkpoint(tmp_path / "ckpt.pt", model=twin, optimizer=twin_opt)
    for step in range(30, 60):
        twin_opt.zero_grad()
        loss_of(twin, step).backward()
        twin_opt.step()
    assert loss_of(model, 0).item() < 0.2 * first
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("native", ["0", "1"])
def test_newton_schulz_runs_in_the_dtype_the_cpu_runs_fast(native, monkeypatch):
    monkeypatch.setenv("DLKIT_CPU_BF16", native)
    g = torch.randn(16, 8, dtype=torch.float64)
    o = newton_schulz(g)
    assert o.dtype == (torch.bfloat16 if native == "1" else torch.float32)
    s = torch.linalg.svdvals(o.double())
    assert s.min() > 0.5 and s.max() < 1.3
    assert newton_schulz(g, dtype=torch.float32).dtype == torch.float32  # asked for: that one
