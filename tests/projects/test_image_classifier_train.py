"""projects.image_classifier: models, the train command's run folder, resume after a kill, evaluate, fast.

Most tests train on a tiny folder of generated PNG images (two classes, a bright square on the left or
on the right), so they need no dataset; the ones on real data skip when it is absent.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, require_dataset

from dlkit.data import ImageData
from projects.image_classifier import evaluate, fast, train
from projects.image_classifier.__main__ import main as cli_main
from projects.image_classifier.models import MODELS, build_model

RUN_FILES = {
    "config.json", "metrics.csv", "loss.png", "accuracy.png", "confusion.png", "calibration.png",
    "checkpoint.pt",
}  # fmt: skip
RUN_FILES.add("model_info.json")
TINY = ["--widths", "8", "16", "16", "--batch-size", "16", "--device", "cpu", "--amp"]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "DLKIT_PROGRESS": "0", "DLKIT_RUNS": str(tmp_path / "runs")}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ and test/ folders of 24 x 24 RGB PNGs: class "left" or "right" by where a square is."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 48), ("test", 16)):
        for label, name in enumerate(("left", "right")):
            (root / split / name).mkdir(parents=True)
            for i in range(n // 2):
                pixels = torch.randint(0, 60, (24, 24, 3), generator=g, dtype=torch.uint8)
                top = int(torch.randint(2, 14, (1,), generator=g))
                left = 2 + 12 * label + int(torch.randint(0, 3, (1,), generator=g))
                pixels[top : top + 8, left : left + 8] = 230
                Image.fromarray(pixels.numpy()).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def trained_run(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny end-to-end training run (2 epochs), in this process."""
    runs = tmp_path_factory.mktemp("runs")
    argv = [
        "--image-folder",
        str(image_folder),
        "--image-size",
        "20",
        "--num-epochs",
        "2",
        "--runs-dir",
        str(runs),
    ]
    train.main([*argv, *TINY, "--run-name", "tiny"])
    return runs / "tiny"


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
def test_models_build_and_run(name: str, channels: int, size: int) -> None:
    model = build_model(name, num_classes=7, in_channels=channels).eval()
    x = torch.rand(2, channels, size, size)  # (B, C, H, W) in [0, 1]
    with torch.no_grad():
        assert model(x).shape == (2, 7)
        assert model(x.contiguous(memory_format=torch.channels_last)).shape == (2, 7)
    with pytest.raises(KeyError, match="resnet_small"):
        build_model("no_such_model", 10)


def test_whitening_layer_whitens_image_patches() -> None:
    model = build_model("resnet_small", 10, in_channels=3, widths=(8, 8, 8))
    x = torch.rand(64, 3, 16, 16) * torch.linspace(0.2, 1, 16)  # correlated pixels
    model.init_whitening(x)
    z = torch.nn.functional.conv2d(model.normalize(x), model.whiten.weight[:12])  # (B, 12, 15, 15)
    z = z.permute(0, 2, 3, 1).reshape(-1, 12).double()
    cov = torch.cov(z.T)
    torch.testing.assert_close(cov, torch.eye(12, dtype=torch.double), atol=0.02, rtol=0)


def test_train_writes_every_file_of_the_run_folder(trained_run: Path) -> None:
    assert {p.name for p in trained_run.iterdir()} >= RUN_FILES
    info = json.loads((trained_run / "model_info.json").read_text())
    assert info["model"] == "resnet_small" and info["model_kwargs"]["widths"] == [8, 16, 16]
    assert info["classes"] == ["left", "right"] and info["num_classes"] == 2 and info["in_channels"] == 3
    assert info["preprocessing"]["size"] == [20, 20] and info["preprocessing"]["normalize_in_model"] is True
    assert info["dataset_name"] == "image_folder"
    assert 0.0 <= info["metrics"]["test_acc"] <= 1.0 and "test_acc_tta" in info["metrics"]
    config = json.loads((trained_run / "config.json").read_text())
    assert config["num_epochs"] == 2 and config["widths"] == [8, 16, 16]
    rows = list(csv.DictReader((trained_run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]


def test_load_trained_gives_the_trained_model(trained_run: Path) -> None:
    model, info = train.load_trained(trained_run)
    assert not model.training
    x = torch.rand(3, info["in_channels"], *info["preprocessing"]["size"])
    assert model(x).shape == (3, info["num_classes"])


def test_evaluate_writes_the_confusion_matrix_and_calibration(trained_run: Path) -> None:
    (trained_run / "confusion.png").unlink()
    (trained_run / "calibration.png").unlink()
    report = evaluate.main(["--run-dir", str(trained_run), "--device", "cpu", "--no-tta"])
    assert (trained_run / "confusion.png").stat().st_size > 1000
    assert (trained_run / "calibration.png").stat().st_size > 1000
    saved = json.loads((trained_run / "evaluation.json").read_text())
    assert saved["acc"] == report["acc"] and saved["tta"] is False and saved["num_images"] == 16
    assert sum(map(sum, saved["confusion"])) == 16 and set(saved["per_class_acc"]) == {"left", "right"}
    calibration = saved["calibration"]
    assert sum(calibration["count"]) == 16 and 0 <= saved["ece"] <= 1
    # two classes: the softmax confidence of the predicted class is never below 1/2
    assert sum(calibration["count"][: len(calibration["count"]) // 2]) == 0


def test_flip_tta_changes_nothing_for_mirror_symmetric_images() -> None:
    torch.manual_seed(0)
    model = build_model("resnet_small", 4, in_channels=3, widths=(8, 8, 8)).eval()
    half = torch.rand(12, 3, 16, 8)
    x = torch.cat([half, half.flip(-1)], dim=-1)  # (12, 3, 16, 16), each its own mirror image
    data = ImageData(x, torch.randint(0, 4, (12,)), ["a", "b", "c", "d"], "mirror-symmetric noise")
    plain = evaluate.predict_logits(model, x, device=torch.device("cpu"), amp=False)
    flipped = evaluate.predict_logits(model, x, device=torch.device("cpu"), tta=True, amp=False)
    torch.testing.assert_close(flipped, plain, atol=1e-5, rtol=1e-5)
    a = evaluate.evaluate_model(model, data, tta=False, amp=False)
    b = evaluate.evaluate_model(model, data, tta=True, amp=False)
    assert a["acc"] == b["acc"] and torch.equal(a["confusion"], b["confusion"])


KILL_AFTER_EPOCH_1 = """
import os, signal, sys
sys.path.insert(0, {root!r})
from projects.image_classifier import train

def kill(epoch, row):
    if epoch == 1:
        os.kill(os.getpid(), signal.SIGKILL)

train.main({argv!r}, callbacks=[kill])
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_killed_run_resumes_to_the_same_result(image_folder: Path, tmp_path: Path) -> None:
    """SIGKILL after epoch 1 of 3; `train --resume` finishes it as an uninterrupted run would."""
    args = ["--image-folder", str(image_folder), "--image-size", "16", "--num-epochs", "3", *TINY]
    env = _env(tmp_path)
    code = KILL_AFTER_EPOCH_1.format(root=str(ROOT), argv=[*args, "--run-name", "killed"])
    killed = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-3000:]
    run_dir = tmp_path / "runs" / "image_classifier"
    assert len(list(csv.DictReader((run_dir / "killed" / "metrics.csv").open()))) == 1
    command = [sys.executable, "-m", "projects.image_classifier", "train"]
    # The resumed run takes its settings from the run folder's config.json: only the name is given.
    outputs = []
    for extra in (["--run-name", "killed", "--resume"], [*args, "--run-name", "whole"]):
        done = subprocess.run([*command, *extra], env=env, cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(done.stdout)
    assert "after epoch 1" in outputs[0] and "resumed" not in outputs[1]
    resumed, whole = (json.loads((run_dir / n / "model_info.json").read_text()) for n in ("killed", "whole"))
    assert resumed["metrics"]["test_acc"] == whole["metrics"]["test_acc"]
    assert resumed["metrics"]["test_loss"] == pytest.approx(whole["metrics"]["test_loss"], abs=1e-6)
    rows = [list(csv.DictReader((run_dir / n / "metrics.csv").open())) for n in ("killed", "whole")]
    assert [r["epoch"] for r in rows[0]] == [r["epoch"] for r in rows[1]] == ["1", "2", "3"]
    for got, want in zip(*rows, strict=True):
        for key in want.keys() - {"seconds"}:
            assert float(got[key]) == pytest.approx(float(want[key]), abs=1e-6), key


def test_fast_path_runs_a_tiny_config_on_the_cpu() -> None:
    torch.manual_seed(0)
    x = torch.rand(96, 1, 16, 16)
    y = (x[:, 0, :, :8].mean(dim=(1, 2)) > x[:, 0, :, 8:].mean(dim=(1, 2))).long()  # brighter half
    data = fast.DeviceData(x[:64], y[:64], x[64:], y[64:], ["right", "left"], [0.5], [0.29])
    cfg = fast.FastConfig(widths=(8, 8, 8), num_epochs=2.0, batch_size=16, ema_start_epochs=1, compile=False)
    model, net = fast.make_model(cfg, data, torch.device("cpu"))
    assert net is model  # no torch.compile on the CPU unless asked
    result = fast.train_fast(cfg, data, model, net, verbose=False)
    assert [r["epoch"] for r in result["epochs"]] == [1, 2]
    assert 0.0 <= result["tta_acc"] <= 1.0 and result["seconds"] > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.needs_data
def test_fast_and_train_quick_on_fashion_mnist(tmp_path: Path) -> None:
    require_dataset("fashion_mnist")
    results = fast.main(["--quick", "--dataset", "fashion_mnist", "--device", "cpu"])
    assert len(results) == 1 and results[0]["tta_acc"] > 0.1  # one epoch of 4 steps: above chance at best
    done = subprocess.run(
        [sys.executable, "-m", "projects.image_classifier", "train", "--quick", "--dataset", "fashion_mnist"],
        env=_env(tmp_path), cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "runs" / "image_classifier" / "fashion_mnist-resnet_small"
    assert {p.name for p in run_dir.iterdir()} >= RUN_FILES
    assert json.loads((run_dir / "model_info.json").read_text())["dataset"] == "Fashion-MNIST"


def test_command_line_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("train", "evaluate", "fast", "export", "predict", "serve"))
    assert cli_main(["no-such-command"]) == 2
