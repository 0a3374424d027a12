"""The project shape: one CLI, the shared train/export/serve pieces, one-line errors."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from dlkit.checkpoint import save_checkpoint
from dlkit.config import flag
from dlkit.errors import UserError
from dlkit.export import export_onnx_checked, read_metadata, save_release
from dlkit.project import (
    ExportConfig,
    ReleasePredictor,
    ServeConfig,
    TrainConfig,
    app_from_env,
    export_main,
    parse_train_config,
    project_main,
    start_training,
    worker_threads,
)
from dlkit.runs import RunFolder


@pytest.fixture
def toy_package(tmp_path, monkeypatch):
    """A package ``toyproj`` with commands ``hello`` (prints its flags) and ``fail`` (a UserError)."""
    pkg = tmp_path / "toyproj"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "hello.py").write_text("def main(argv):\n    print('hello', *argv)\n    return 3\n")
    (pkg / "fail.py").write_text(
        "from dlkit.errors import UserError\ndef main(argv):\n    raise UserError('the release is missing')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "toyproj"
    for name in [m for m in sys.modules if m.startswith("toyproj")]:
        del sys.modules[name]


def test_project_main_dispatches_aliases_and_prints_errors_in_one_line(toy_package, capsys):
    commands = {"hello": "say hello", "hi": "=hello", "fail": "fail politely"}
    assert project_main(toy_package, commands, ["hello", "a"], "usage") == 3
    assert project_main(toy_package, commands, ["hi", "b"], "usage") == 3  # an alias
    assert capsys.readouterr().out.splitlines() == ["hello a", "hello b"]
    assert project_main(toy_package, commands, ["fail"], "usage") == 1
    assert capsys.readouterr().err == "error: the release is missing\n"
    assert project_main(toy_package, commands, ["nope"], "usage") == 2
    out = capsys.readouterr()
    assert "unknown command 'nope'" in out.err and "hi" not in out.out.split("usage")[1]  # aliases hidden


@dataclass
class ToyTrain(TrainConfig):
    """Train a toy."""

    width: int = flag(8, help="units", min=1)
    lr: float = 0.1


def test_parse_train_config_resume_reads_the_saved_config_and_flags_win(tmp_path, monkeypatch):
    monkeypatch.setenv("DLKIT_RUNS", str(tmp_path))
    run_of = lambda cfg: RunFolder.of("toy", cfg.run_name or "default")  # noqa: E731
    cfg = parse_train_config(ToyTrain, ["--width", "16", "--quick"], run_of, quick={"lr": 0.5})
    assert (cfg.width, cfg.lr, cfg.quick) == (16, 0.5, True)
    device = start_training(cfg, run_of(cfg))
    assert (
        device.type in ("cpu", "cuda", "mps")
        and json.loads(run_of(cfg).config_path.read_text())["width"] == 16
    )
    resumed = parse_train_config(ToyTrain, ["--resume", "--lr", "0.2"], run_of, quick={"lr": 0.5})
    assert (resumed.width, resumed.lr, resumed.resume) == (16, 0.2, True)  # saved width, given lr
    with pytest.raises(SystemExit):
        parse_train_config(ToyTrain, ["--width", "0"], run_of)
    by_recipe = parse_train_config(ToyTrain, [], run_of, defaults=lambda given: {"width": 32})
    assert by_recipe.width == 32


class _Linear(ReleasePredictor):
    @staticmethod
    def build_model(metadata):
        return nn.Linear(*metadata["architecture"]["kwargs"]["shape"])


def test_export_main_stages_the_release_and_a_failed_parity_check_writes_nothing(tmp_path, capsys):
    run = RunFolder(tmp_path / "run").create()
    model = nn.Linear(4, 3)
    save_checkpoint(run.checkpoint, model=model, epoch=1)
    run.write_info({"shape": [4, 3]})
    examples = torch.randn(16, 4)

    def write(cfg, run, staging):
        metadata = {
            "architecture": {"name": "linear", "kwargs": {"shape": [4, 3]}},
            "classes": ["a", "b", "c"],
        }
        metadata.update(export_onnx_checked(model, examples, staging, source="16 random rows", atol=cfg.atol))
        save_release(model, {**metadata, "trained_from": str(run.path)}, staging)
        return metadata

    assert export_main(["--run-dir", str(run.path)], ExportConfig, write) == 0
    meta = read_metadata(run.release)
    assert meta["parity"]["onnx_max_abs_diff"] < 1e-5 and (run.release / "model.onnx").is_file()
    assert "ONNX Runtime vs PyTorch on 16 random rows" in capsys.readouterr().out

    def wrong(cfg, run, staging):
        from dlkit.export import ParityError

        raise ParityError("ONNX says 2, torch says 3", 1.0)

    with pytest.raises(UserError, match="nothing written"):
        export_main(["--run-dir", str(run.path), "--out", str(tmp_path / "other")], ExportConfig, wrong)
    assert not (tmp_path / "other").exists()
    with pytest.raises(UserError, match="--run-dir is required"):
        export_main([], ExportConfig, write)

    predictor = _Linear.from_release(run.release, "cpu")
    described = predictor.describe()
    assert described["name"] == "linear" and described["classes"] == ["a", "b", "c"]
    assert str(tmp_path) not in json.dumps(described)  # where files lie is not a client's business
    with pytest.raises(UserError, match="no such folder"):
        _Linear.from_release(tmp_path / "nowhere")


def test_serve_workers_share_the_cores_and_get_their_config_from_one_variable(monkeypatch):
    assert worker_threads(ServeConfig(workers=1, threads=3)) == 3
    assert worker_threads(ServeConfig(workers=64)) == 1
    seen = {}

    def factory(cfg):
        seen["cfg"] = cfg
        return "the app"

    monkeypatch.setattr(sys.modules[__name__], "factory", factory, raising=False)
    spec = {
        "factory": f"{__name__}:factory",
        "config_class": "dlkit.project:ServeConfig",
        "config": {**ServeConfig(release="r", workers=2, threads=1).__dict__},
    }
    monkeypatch.setenv("DLKIT_SERVE", json.dumps(spec))
    threads = torch.get_num_threads()
    try:
        assert app_from_env() == "the app"
        assert seen["cfg"].release == "r" and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
