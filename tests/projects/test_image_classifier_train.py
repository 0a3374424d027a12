"""projects.image_classifier: models, data splits, the train command's run folder, resume after a kill,
evaluate on val and test, the fast path on dlkit's loop, quick mode offline, one-line errors.

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
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import ROOT, require_dataset

from dlkit.data import ImageData
from projects.image_classifier import evaluate, fast, scoring, train
from projects.image_classifier.__main__ import main as cli_main
from projects.image_classifier.data import load_splits
from projects.image_classifier.models import MODELS, build_model, model_from_info

RUN_FILES = {
    "config.json", "metrics.csv", "loss.png", "accuracy.png", "confusion_test.png", "calibration_test.png",
    "checkpoint.pt", "model_info.json",
}  # fmt: skip
TINY = [
    "--widths",
    "8",
    "16",
    "16",
    "--batch-size",
    "16",
    "--device",
    "cpu",
    "--val-fraction",
    "0.25",
]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DLKIT_PROGRESS": "0", "DLKIT_RUNS": str(tmp_path / "runs")}
    return {**env, **extra}


def _offline(tmp_path: Path) -> dict[str, str]:
    """The environment of a user's machine with no dataset anywhere (nothing found, nothing cached)."""
    return {
        "DLKIT_DATA": str(tmp_path / "no_data"),
        "DLKIT_CACHE": str(tmp_path / "cache"),
        "DLKIT_SYSTEM_DATA": "0",
    }


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ and test/ folders of 24 x 24 RGB PNGs: class "left" or "right" by where a square is."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 64), ("test", 16)):
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
    """One tiny end-to-end training run (3 epochs), in this process."""
    runs = tmp_path_factory.mktemp("runs")
    argv = [
        "--image-folder",
        str(image_folder),
        "--image-size",
        "20",
        "--num-epochs",
        "3",
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


def test_validation_split_is_held_out_of_training_and_the_same_for_every_seed() -> None:
    a = load_splits("digits", val_fraction=0.1, seed=0)
    b = load_splits("digits", val_fraction=0.1, seed=7)
    whole = load_splits("digits", val_fraction=0.0)
    assert a.val is not None and len(a.val) == round(0.1 * len(whole.train)) and whole.val is None
    assert len(a.train) + len(a.val) == len(whole.train)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.y, b.train.y)  # --seed moves no image
    rows = {tuple(r.tolist()) for r in whole.train.x.flatten(1)}
    assert {tuple(r.tolist()) for r in a.val.x.flatten(1)} <= rows
    assert a.train.x.shape[-2:] == (16, 16)  # 8x8 digits scaled up to what the networks take
    assert torch.equal(a.test.y, whole.test.y)  # the test split is never cut


def test_train_writes_every_file_of_the_run_folder(trained_run: Path) -> None:
    assert {p.name for p in trained_run.iterdir()} >= RUN_FILES
    info = json.loads((trained_run / "model_info.json").read_text())
    assert info["model"] == "resnet_small" and info["model_kwargs"]["widths"] == [8, 16, 16]
    assert info["classes"] == ["left", "right"] and info["num_classes"] == 2 and info["in_channels"] == 3
    assert info["preprocessing"]["size"] == [20, 20] and info["preprocessing"]["normalize_in_model"] is True
    assert info["dataset_name"] == "image_folder" and info["val_fraction"] == 0.25
    metrics = info["metrics"]
    assert {"val_acc", "val_loss", "test_acc", "test_acc_tta", "test_loss", "selected_epoch"} <= set(metrics)
    config = json.loads((trained_run / "config.json").read_text())
    assert config["num_epochs"] == 3 and config["widths"] == [8, 16, 16]
    rows = list(csv.DictReader((trained_run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert "val_acc" in rows[0] and not any(k.startswith("test") for k in rows[0])  # the test set: once
    best = max(rows, key=lambda r: float(r["val_acc"]))  # the first best: keep-best's choice
    assert metrics["selected_epoch"] == int(best["epoch"]) and metrics["val_acc"] == float(best["val_acc"])


def test_load_trained_gives_the_selected_weights(trained_run: Path) -> None:
    from dlkit.runs import load_trained

    model, info = load_trained(trained_run, model_from_info)
    assert not model.training
    x = torch.rand(3, info["in_channels"], *info["preprocessing"]["size"])
    assert model(x).shape == (3, info["num_classes"])
    report = evaluate.main(["--run-dir", str(trained_run), "--split", "val", "--no-tta", "--device", "cpu"])
    assert report["acc"] == pytest.approx(info["metrics"]["val_acc"], abs=1e-6)  # the split made again


def test_evaluate_writes_the_confusion_matrix_and_calibration(trained_run: Path) -> None:
    report = evaluate.main(["--run-dir", str(trained_run), "--device", "cpu", "--no-tta"])
    assert (trained_run / "confusion_test.png").stat().st_size > 1000
    assert (trained_run / "calibration_test.png").stat().st_size > 1000
    saved = json.loads((trained_run / "evaluation_test.json").read_text())
    assert saved["acc"] == report["acc"] and saved["tta"] is False and saved["num_images"] == 16
    assert sum(map(sum, saved["confusion"])) == 16 and set(saved["per_class_acc"]) == {"left", "right"}
    info = json.loads((trained_run / "model_info.json").read_text())
    assert saved["acc"] == pytest.approx(info["metrics"]["test_acc"], abs=1e-6)
    calibration = saved["calibration"]
    assert sum(calibration["count"]) == 16
    # two classes: the softmax confidence of the predicted class is never below 1/2
    assert sum(calibration["count"][: len(calibration["count"]) // 2]) == 0
    val = evaluate.main(["--run-dir", str(trained_run), "--device", "cpu", "--split", "val"])
    assert val["split"] == "val" and val["num_images"] == 16  # 25% of the 64 training images


def test_flip_tta_changes_nothing_for_mirror_symmetric_images() -> None:
    torch.manual_seed(0)
    model = build_model("resnet_small", 4, in_channels=3, widths=(8, 8, 8)).eval()
    half = torch.rand(12, 3, 16, 8)
    x = torch.cat([half, half.flip(-1)], dim=-1)  # (12, 3, 16, 16), each its own mirror image
    data = ImageData(x, torch.randint(0, 4, (12,)), ["a", "b", "c", "d"], "mirror-symmetric noise")
    plain = scoring.predict_logits(model, x, device=torch.device("cpu"), amp=False)
    flipped = scoring.predict_logits(model, x, device=torch.device("cpu"), tta=True, amp=False)
    torch.testing.assert_close(flipped, plain, atol=1e-5, rtol=1e-5)
    a = scoring.evaluate_model(model, data, tta=False, amp=False)
    b = scoring.evaluate_model(model, data, tta=True, amp=False)
    assert a["acc"] == b["acc"] and torch.equal(a["confusion"], b["confusion"])


KILL_AFTER_EPOCH_1 = """
import os, signal, sys
sys.path.insert(0, {root!r})
from dlkit.train import Callback
from projects.image_classifier import train

class Kill(Callback):
    def on_eval(self, state, row):
        if state.epoch == 1:
            os.kill(os.getpid(), signal.SIGKILL)

train.main({argv!r}, callbacks=[Kill()])
"""


@pytest.mark.slow
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
    assert "resumed from" in outputs[0] and "resumed" not in outputs[1]
    resumed, whole = (json.loads((run_dir / n / "model_info.json").read_text()) for n in ("killed", "whole"))
    for key in ("val_acc", "test_acc", "test_acc_tta", "selected_epoch"):
        assert resumed["metrics"][key] == whole["metrics"][key], key
    assert resumed["metrics"]["test_loss"] == pytest.approx(whole["metrics"]["test_loss"], abs=1e-6)
    rows = [list(csv.DictReader((run_dir / n / "metrics.csv").open())) for n in ("killed", "whole")]
    assert [r["epoch"] for r in rows[0]] == [r["epoch"] for r in rows[1]] == ["1", "2", "3"]
    for got, want in zip(*rows, strict=True):
        for key in want.keys() - {"seconds"}:
            assert float(got[key]) == pytest.approx(float(want[key]), abs=1e-6), key


def _tiny_fast_data(n_train: int = 64) -> fast.DeviceData:
    torch.manual_seed(0)
    x = torch.rand(n_train + 32, 1, 16, 16)
    y = (x[:, 0, :, :8].mean(dim=(1, 2)) > x[:, 0, :, 8:].mean(dim=(1, 2))).long()  # brighter half
    return fast.DeviceData(
        x[:n_train], y[:n_train], x[n_train:], y[n_train:], ["right", "left"], [0.5], [0.29]
    )


def test_fast_path_runs_a_tiny_config_on_the_cpu() -> None:
    data = _tiny_fast_data()
    cfg = fast.FastConfig(widths=(8, 8, 8), num_epochs=2.5, batch_size=16, ema_start_epochs=1, compile=False)
    model, net = fast.make_model(cfg, data, torch.device("cpu"))
    assert net is model  # no torch.compile on the CPU unless asked
    result = fast.train_fast(cfg, data, model, net, verbose=False)
    assert [r["epoch"] for r in result["epochs"]] == [1, 2, 2]  # 2.5 epochs: the last row mid-epoch
    assert [r["step"] for r in result["epochs"]] == [4, 8, 10]
    assert all("test_acc" in r for r in result["epochs"]) and 0.0 <= result["tta_acc"] <= 1.0
    seconds = [r["seconds"] for r in result["epochs"]]
    assert seconds == sorted(seconds) and result["seconds"] >= seconds[-1] > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_fast_lookahead_averages_weights_and_ends_each_epoch_on_the_average() -> None:
    from dlkit.train import LoopState

    cfg = fast.FastConfig(widths=(8, 8, 8), ema_start_epochs=0, ema_every_steps=2, compile=False)
    model = build_model("resnet_small", 2, 1, widths=(8, 8, 8))
    head = model.head.weight
    lookahead = fast.Lookahead(model, cfg, steps_per_epoch=3, total_steps=6)
    lookahead.on_step(LoopState(step=1))
    assert lookahead.average is None  # the first update comes at step 2
    start = head.detach().clone()
    lookahead.on_step(LoopState(step=2))  # the average starts from the weights: nothing moves
    assert torch.equal(head, start)
    with torch.no_grad():
        head.add_(1.0)  # a training step
    lookahead.on_step(LoopState(step=3))  # the end of epoch 1: back onto the average
    assert torch.equal(head, start)
    with torch.no_grad():
        head.add_(1.0)
    lookahead.on_step(LoopState(step=4, epoch=1))
    decay = 0.95**2 * (4 / 6) ** 3
    torch.testing.assert_close(head.detach(), start + (1 - decay), rtol=0, atol=1e-6)


def test_fast_trains_the_whitening_bias_in_every_run_of_a_reused_model() -> None:
    """The benchmark's timed runs reuse one (compiled) model after a warm-up run: each must train the
    whitening bias for its first epochs, as airbench does (it once stayed frozen after the first run)."""
    data = _tiny_fast_data()
    cfg = fast.FastConfig(
        widths=(8, 8, 8), num_epochs=2.0, batch_size=16, whiten_bias_epochs=1, compile=False
    )
    model, net = fast.make_model(cfg, data, torch.device("cpu"))
    for _ in range(2):
        fast.train_fast(cfg, data, model, net, verbose=False)
        assert model.whiten.bias.abs().sum() > 0 and not model.whiten.bias.requires_grad


def test_fast_path_rows_count_the_epoch_its_last_step_completes() -> None:
    data = _tiny_fast_data()
    cfg = fast.FastConfig(widths=(8, 8, 8), num_epochs=2.0, batch_size=16, compile=False)
    model, net = fast.make_model(cfg, data, torch.device("cpu"))
    result = fast.train_fast(cfg, data, model, net, verbose=False)
    assert [(r["step"], r["epoch"]) for r in result["epochs"]] == [(4, 1), (8, 2)]


@pytest.mark.parametrize(("native", "dtype"), [("0", torch.float32), ("1", torch.bfloat16)])
def test_fast_path_computes_in_the_dtype_the_cpu_runs_fast(
    native: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bf16 autocast only on a CPU with native bf16; float32 without it (emulated bf16: 10-30x slower)."""
    monkeypatch.setenv("DLKIT_CPU_BF16", native)
    data = _tiny_fast_data()
    cfg = fast.FastConfig(widths=(8, 8, 8), num_epochs=1.0, batch_size=16, compile=False)
    model, net = fast.make_model(cfg, data, torch.device("cpu"))
    seen: set[torch.dtype] = set()
    model.head.register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
    fast.train_fast(cfg, data, model, net, verbose=False)
    assert seen == {dtype}  # training, the per-epoch accuracy and the TTA evaluation alike


@pytest.mark.parametrize(("native", "dtype"), [("0", torch.float32), ("1", torch.bfloat16)])
def test_train_computes_in_the_dtype_the_cpu_runs_fast(
    native: str, dtype: torch.dtype, image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DLKIT_CPU_BF16", native)
    seen: set[torch.dtype] = set()

    def build_and_watch(*args: object, **kwargs: object) -> torch.nn.Module:
        model = build_model(*args, **kwargs)  # type: ignore[arg-type]
        model.head.register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
        return model

    monkeypatch.setattr(train, "build_model", build_and_watch)
    argv = ["--image-folder", str(image_folder), "--image-size", "16", "--num-epochs", "1", *TINY]
    train.main([*argv, "--runs-dir", str(tmp_path), "--run-name", "dtype"])
    assert seen == {dtype}  # training, validation and the test split scored at the end


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process as a user's machine without any dataset: DLKIT_DATA, the cache and system data off."""
    for key, value in _offline(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DLKIT_RUNS", str(tmp_path / "runs"))
    yield tmp_path


@pytest.mark.slow
def test_quick_mode_runs_offline_on_digits_and_says_so(
    offline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["train", "--quick", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "quick mode: cifar10 is not on this machine, so this run uses digits instead" in out
    run_dir = offline / "runs" / "image_classifier" / "cifar10-resnet_small-quick"
    assert {p.name for p in run_dir.iterdir()} >= RUN_FILES
    info = json.loads((run_dir / "model_info.json").read_text())
    assert info["dataset"] == "scikit-learn digits" and info["preprocessing"]["size"] == [16, 16]
    assert cli_main(["export", "--run-dir", str(run_dir)]) == 0  # checked on digits' test images
    meta = json.loads((run_dir / "release" / "model.json").read_text())
    assert meta["parity"]["examples"].endswith("test images of scikit-learn digits")
    assert cli_main(["fast", "--quick", "--device", "cpu"]) == 0
    assert "uses digits instead" in capsys.readouterr().out


def test_expected_errors_are_one_line_without_a_traceback(
    trained_run: Path, offline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def one_line_error(argv: list[str], code: int = 1) -> str:
        assert cli_main(argv) == code
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err, err
        return err

    assert "no public download" in one_line_error(["train", "--dataset", "cifar10_jpeg"])
    assert "no such folder" in one_line_error(["train", "--image-folder", str(offline / "nowhere")])
    if not torch.cuda.is_available():
        assert "no CUDA GPU" in one_line_error(["train", "--quick", "--device", "cuda"])
    assert "does not exist" in one_line_error(["evaluate", "--run-dir", str(offline / "nowhere")])
    broken = offline / "broken"
    broken.mkdir()
    for name in ("model_info.json", "config.json"):
        (broken / name).write_bytes((trained_run / name).read_bytes())
    (broken / "checkpoint.pt").write_bytes((trained_run / "checkpoint.pt").read_bytes()[:1000])  # truncated
    err = one_line_error(["evaluate", "--run-dir", str(broken), "--device", "cpu"])
    assert str(broken / "checkpoint.pt") in err and "corrupt" in err
    assert "no such folder" in one_line_error(["predict", "x.png", "--release", str(offline / "nowhere")])
    for bad in ("0", "-1"):
        with pytest.raises(SystemExit) as exit_info:
            cli_main(["predict", "x.png", "--release", str(offline), "--batch-size", bad])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "--batch-size must be >= 1" in err and "Traceback" not in err


@pytest.mark.slow
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
    run_dir = tmp_path / "runs" / "image_classifier" / "fashion_mnist-resnet_small-quick"
    assert {p.name for p in run_dir.iterdir()} >= RUN_FILES
    assert json.loads((run_dir / "model_info.json").read_text())["dataset"] == "Fashion-MNIST"


@pytest.mark.slow
@pytest.mark.needs_data
def test_a_truncated_decoded_cache_is_rebuilt_and_train_goes_on(tmp_path: Path) -> None:
    """A decoded cifar10_jpeg-test-*.pt cut short (a killed writer, a full disk) does not break train."""
    require_dataset("cifar10_jpeg")
    from dlkit.data import cache_dir, load_dataset

    load_dataset("cifar10_jpeg", split="train")  # make sure both decoded files exist in the usual cache
    load_dataset("cifar10_jpeg", split="test")
    decoded = tmp_path / "cache" / "decoded"
    decoded.mkdir(parents=True)
    for path in (cache_dir() / "decoded").glob("cifar10_jpeg-*.pt"):
        (decoded / path.name).write_bytes(path.read_bytes())
    (test_cache,) = decoded.glob("cifar10_jpeg-test-*.pt")
    whole = test_cache.stat().st_size
    test_cache.write_bytes(test_cache.read_bytes()[: whole // 3])
    done = subprocess.run(
        [sys.executable, "-m", "projects.image_classifier", "train", "--quick", "--dataset", "cifar10_jpeg"],
        env=_env(tmp_path, DLKIT_CACHE=str(tmp_path / "cache")), cwd=ROOT, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "is corrupt" in done.stderr and "decoding again" in done.stderr
    rebuilt = torch.load(test_cache, weights_only=True)  # whole again
    assert rebuilt["x"].shape == (10_000, 3, 32, 32) and len(rebuilt["y"]) == 10_000
    info = json.loads(
        (
            tmp_path / "runs" / "image_classifier" / "cifar10_jpeg-resnet_small-quick" / "model_info.json"
        ).read_text()
    )
    assert info["dataset"] == "CIFAR-10 (JPEG)"


def test_command_line_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("train", "evaluate", "fast", "export", "predict", "serve"))
    assert cli_main(["no-such-command"]) == 2
