"""dlkit.export: a release folder round-trips a model exactly; ONNX and torch.export agree with PyTorch."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dlkit.export import (
    METADATA_FILE,
    WEIGHTS_FILE,
    ParityError,
    ReleaseError,
    check_onnx_parity,
    export_onnx,
    export_program,
    load_program,
    load_release,
    read_metadata,
    save_release,
)


class TinyNet(nn.Module):
    """Conv, BatchNorm (with running statistics), pooling and a linear head: (B, 3, 8, 8) -> (B, 4)."""

    def __init__(self, width: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.head = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


class TiedNet(nn.Module):
    """An embedding and an output layer sharing one weight matrix (as language models do)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(idx))


def trained_tiny() -> TinyNet:
    """A TinyNet whose BatchNorm running statistics are no longer the defaults."""
    torch.manual_seed(0)
    model = TinyNet()
    model.train()
    model(torch.rand(16, 3, 8, 8))
    return model.eval()


def build(meta: dict[str, Any]) -> nn.Module:
    return TinyNet(**meta["architecture"]["kwargs"])


METADATA = {
    "architecture": {"name": "tiny", "kwargs": {"width": 6}},
    "classes": ["a", "b", "c", "d"],
    "preprocessing": {"size": [8, 8], "channels": 3, "mean": [0.0] * 3, "std": [1.0] * 3},
    "metrics": {"test_accuracy": 0.5},
    "dataset": "none (unit test)",
}


def test_release_round_trip_is_exact(tmp_path: Path) -> None:
    model = trained_tiny()
    save_release(model, METADATA, tmp_path)
    loaded, meta = load_release(tmp_path, build)
    x = torch.rand(5, 3, 8, 8)
    assert not loaded.training
    assert torch.equal(loaded(x), model(x))
    assert meta["classes"] == METADATA["classes"] and meta["metrics"] == METADATA["metrics"]
    assert meta["torch_version"] == torch.__version__ and meta["created"]
    on_disk = json.loads((tmp_path / METADATA_FILE).read_text())
    assert on_disk["weights"]["file"] == WEIGHTS_FILE and len(on_disk["weights"]["sha256"]) == 64


def test_tied_weights_are_saved_once_and_stay_tied(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TiedNet()
    save_release(model, {"architecture": "tied"}, tmp_path)
    loaded, meta = load_release(tmp_path, lambda meta: TiedNet())
    assert meta["weights"]["tied"] == {"out.weight": "embed.weight"}
    assert loaded.out.weight is loaded.embed.weight
    idx = torch.arange(10)
    assert torch.equal(loaded(idx), model(idx))


def test_views_and_non_contiguous_tensors_are_copied(tmp_path: Path) -> None:
    model = nn.Linear(4, 3)
    with torch.no_grad():  # a transposed weight: same storage, non-contiguous
        model.weight = nn.Parameter(torch.randn(4, 3).t())
    base = torch.arange(6.0)
    model.register_buffer("low", base[:3])  # two views into one storage
    model.register_buffer("high", base[3:])

    def build_linear(meta: dict[str, Any]) -> nn.Module:
        linear = nn.Linear(4, 3)
        linear.register_buffer("low", torch.zeros(3))
        linear.register_buffer("high", torch.zeros(3))
        return linear

    save_release(model, {}, tmp_path)
    loaded, _ = load_release(tmp_path, build_linear)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


@pytest.mark.parametrize("bad", [{"x": math.nan}, {"path": Path("/tmp")}, {"t": torch.ones(1)}])
def test_metadata_must_be_plain_json(tmp_path: Path, bad: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="plain JSON"):
        save_release(TinyNet(), bad, tmp_path)
    assert not (tmp_path / WEIGHTS_FILE).exists()


def test_missing_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="release folder"):
        load_release(tmp_path / "nowhere", build)
    save_release(trained_tiny(), METADATA, tmp_path)
    (tmp_path / WEIGHTS_FILE).unlink()
    with pytest.raises(ReleaseError, match="not found"):
        load_release(tmp_path, build)


def test_corrupt_files_give_clear_errors(tmp_path: Path) -> None:
    save_release(trained_tiny(), METADATA, tmp_path)
    weights = tmp_path / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ReleaseError, match="corrupt"):
        load_release(tmp_path, build)
    meta = json.loads((tmp_path / METADATA_FILE).read_text())
    del meta["weights"]["sha256"]  # without the checksum, safetensors itself must notice
    (tmp_path / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ReleaseError, match="not a safetensors file"):
        load_release(tmp_path, build)
    (tmp_path / METADATA_FILE).write_text("{not json")
    with pytest.raises(ReleaseError, match="not JSON"):
        load_release(tmp_path, build)


def test_mismatched_architecture_lists_the_keys(tmp_path: Path) -> None:
    save_release(trained_tiny(), METADATA, tmp_path)
    with pytest.raises(ReleaseError, match=r"wrong shape \(\d+\): features.0.weight"):
        load_release(tmp_path, lambda meta: TinyNet(width=8))
    with pytest.raises(ReleaseError, match=r"missing \(2\): extra.bias, extra.weight"):
        load_release(tmp_path, lambda meta: nn.ModuleDict({"features": TinyNet().features,
                                                              "head": TinyNet().head,
                                                              "extra": nn.Linear(1, 1)}))  # fmt: skip


@pytest.mark.slow
def test_onnx_export_has_a_dynamic_batch_and_matches_pytorch(tmp_path: Path) -> None:
    model = trained_tiny()
    path = export_onnx(model, torch.rand(1, 3, 8, 8), tmp_path / "model.onnx")
    assert path.is_file() and not list(tmp_path.glob("*.data"))  # one self-contained file
    for batch_size in (1, 7):
        diff = check_onnx_parity(model, path, torch.rand(batch_size, 3, 8, 8))
        assert diff < 1e-5
    with torch.no_grad():  # a model that drifted from the exported graph fails the check
        model.head.bias += 0.1
    with pytest.raises(ParityError, match="max abs diff") as info:
        check_onnx_parity(model, path, torch.rand(4, 3, 8, 8))
    assert info.value.max_abs_diff == pytest.approx(0.1, abs=1e-4)


@pytest.mark.slow
def test_exported_program_round_trips(tmp_path: Path) -> None:
    model = trained_tiny()
    path = export_program(model, torch.rand(2, 3, 8, 8), tmp_path / "model.pt2")
    program = load_program(path)
    x = torch.rand(5, 3, 8, 8)
    torch.testing.assert_close(program(x), model(x))


class TokenNet(nn.Module):
    """Token ids (B, T) and a float mask (B, T) -> (B, 2): a model whose first input is an integer."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.head = nn.Embedding(50, 8), nn.Linear(8, 2)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled = (self.embed(ids) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.head(pooled)


@pytest.mark.slow
def test_onnx_of_several_inputs_with_free_lengths(tmp_path: Path) -> None:
    """Token ids and a mask: one batch and one length dimension shared, both free; parity keeps ints."""
    torch.manual_seed(0)
    model = TokenNet().eval()
    ids, mask = torch.randint(0, 50, (1, 6)), torch.ones(1, 6)  # a batch of one is grown to stay free
    path = export_onnx(model, (ids, mask), tmp_path / "tokens.onnx", input_name=["ids", "mask"],
                       dynamic_length=True)  # fmt: skip
    batches = [(torch.randint(0, 50, (b, t)), torch.ones(b, t)) for b, t in ((3, 6), (1, 17), (5, 2))]
    assert check_onnx_parity(model, path, batches) < 1e-5
    fixed = export_onnx(model, (ids, mask), tmp_path / "fixed.onnx", input_name=["ids", "mask"])
    with pytest.raises(Exception, match="(?i)dimension|shape"):  # without dynamic_length, 6 tokens only
        check_onnx_parity(model, fixed, [(torch.randint(0, 50, (2, 9)), torch.ones(2, 9))])
    with pytest.raises(ValueError, match="2 example inputs but 1 input names"):
        export_onnx(model, (ids, mask), tmp_path / "bad.onnx", input_name="ids")


def test_staged_release_writes_all_or_nothing(tmp_path: Path) -> None:
    from dlkit.export import staged_release

    out = tmp_path / "release"
    with pytest.raises(RuntimeError, match="check failed"), staged_release(out) as staging:
        (staging / "model.onnx").write_text("half-written")
        raise RuntimeError("check failed")
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no release, no staging left behind
    with staged_release(out) as staging:
        save_release(trained_tiny(), METADATA, staging)
    assert (out / "model.safetensors").is_file()
    with staged_release(out) as staging:  # a release is replaced by the next one
        save_release(trained_tiny(), {**METADATA, "note": "second"}, staging)
    assert read_metadata(out)["note"] == "second"
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a release"), staged_release(other) as staging:
        save_release(trained_tiny(), METADATA, staging)
    assert (other / "mine.txt").read_text() == "keep me"
