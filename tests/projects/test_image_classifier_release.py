"""The image classifier's release path: run folder -> export (checked) -> predict on any kind of image."""

from __future__ import annotations

import copy
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import ROOT
from PIL import Image

if str(ROOT) not in sys.path:  # `projects` is not installed: it is imported from the repository root
    sys.path.insert(0, str(ROOT))

pytest.importorskip("onnxruntime")
from dlkit.checkpoint import save_checkpoint
from dlkit.data import FASHION_MNIST_CLASSES, REGISTRY, load_dataset, locate
from dlkit.errors import UserError
from dlkit.export import check_onnx_parity, load_release
from dlkit.runs import load_trained
from projects.image_classifier import export, predict
from projects.image_classifier.models import build_model, model_from_info, model_from_metadata
from projects.image_classifier.predict import ImagePredictor, prepare_image
from projects.image_classifier.serve import ServeConfig, build_app

pytestmark = pytest.mark.slow
DATASET = "cifar10_jpeg"


def make_run(run_dir: Path, *, in_channels: int, size: int, classes: list[str], dataset_name: str) -> Path:
    """A run folder as train.py writes it, with an untrained (but whitened) small resnet_small."""
    torch.manual_seed(0)
    kwargs = {"widths": [8, 16, 16], "mean": [0.5] * in_channels, "std": [0.25] * in_channels}
    model = build_model("resnet_small", len(classes), in_channels, **kwargs)
    model.init_whitening(torch.rand(64, in_channels, size, size))
    save_checkpoint(run_dir / "checkpoint.pt", model=model, epoch=1)
    info = {
        "model": "resnet_small", "model_kwargs": kwargs, "num_classes": len(classes),
        "in_channels": in_channels, "classes": classes,
        "preprocessing": {"size": [size, size], "channels": in_channels, "mean": [0.0] * in_channels,
                          "std": [1.0] * in_channels, "normalize_in_model": True},
        "dataset": REGISTRY[dataset_name].title, "dataset_name": dataset_name, "metrics": {"test_acc": 0.1},
    }  # fmt: skip
    (run_dir / "model_info.json").write_text(json.dumps(info))
    (run_dir / "config.json").write_text(json.dumps({"dataset": dataset_name, "image_folder": ""}))
    return run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quick real training run of resnet_small on a CIFAR-10 subset, or a constructed one without data."""
    root = tmp_path_factory.mktemp("runs")
    if locate(DATASET) is None:
        from dlkit.data import CIFAR10_CLASSES

        return make_run(root / "quick", in_channels=3, size=32, classes=CIFAR10_CLASSES, dataset_name=DATASET)
    from projects.image_classifier import train

    train.main(
        ["--quick", "--dataset", DATASET, "--runs-dir", str(root), "--run-name", "quick", "--device", "cpu"]
    )
    return root / "quick"


@pytest.fixture(scope="module")
def release(run_dir: Path) -> Path:
    argv = ["--run-dir", str(run_dir), "--out", str(run_dir / "release"), *images_unless_data(run_dir)]
    assert export.main(argv) == 0
    return run_dir / "release"


def images_unless_data(folder: Path) -> list[str]:
    """``--images`` flags for export when the dataset's test images are not found locally, else none."""
    if locate(DATASET) is not None:
        return []
    for i in range(8):
        Image.effect_noise((32, 32), 20 + 10 * i).convert("RGB").save(folder / f"given{i}.png")
    return ["--images", *(str(folder / f"given{i}.png") for i in range(8))]


def test_release_holds_weights_metadata_and_checked_graphs(release: Path) -> None:
    files = {p.name for p in release.iterdir()}
    assert files == {"model.safetensors", "model.json", "model.onnx", "model.pt2"}
    meta = json.loads((release / "model.json").read_text())
    assert meta["architecture"]["name"] == "resnet_small" and len(meta["classes"]) == 10
    assert meta["preprocessing"]["size"] == [32, 32] and meta["dataset_name"] == DATASET
    assert "test_acc" in meta["metrics"] and meta["torch_version"] == torch.__version__
    assert meta["parity"]["onnx_max_abs_diff"] < 1e-4 and meta["parity"]["program_max_abs_diff"] < 1e-4
    if locate(DATASET) is not None:
        assert meta["parity"]["examples"] == "64 test images of CIFAR-10 (JPEG)"


def test_release_gives_the_trained_models_outputs(run_dir: Path, release: Path) -> None:
    trained, _ = load_trained(run_dir, model_from_info)
    loaded, _ = load_release(release, model_from_metadata)
    x = torch.rand(6, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), trained(x))


def test_onnx_agrees_with_pytorch_on_real_images(release: Path) -> None:
    from dlkit.export import onnx_session

    pytest.importorskip("onnx")
    if locate(DATASET) is None:
        pytest.skip(f"{DATASET} not found locally")
    model, _ = load_release(release, model_from_metadata)
    x = load_dataset(DATASET, split="test").subset(100, seed=1).x
    assert check_onnx_parity(model, release / "model.onnx", x, atol=1e-4, rtol=0) < 1e-4
    assert onnx_session(release / "model.onnx").get_inputs()[0].shape[0] == "batch"


def test_preprocessing_is_exactly_the_training_data(release: Path) -> None:
    """A dataset image saved as PNG and predicted on becomes the very tensor the model trained on."""
    if locate(DATASET) is None:
        pytest.skip(f"{DATASET} not found locally")
    predictor = ImagePredictor.from_release(release, "cpu")
    x = load_dataset(DATASET, split="test").x[:8]  # (8, 3, 32, 32) in [0, 1]
    for image in x:
        pixels = image.mul(255).round().byte().permute(1, 2, 0).numpy()
        png = io.BytesIO()
        Image.fromarray(pixels).save(png, "PNG")
        assert torch.equal(prepare_image(Image.open(png), predictor.preprocessing), image)
    with torch.no_grad():
        expected = predictor.model(x).softmax(dim=1)
    images = [Image.fromarray(i.mul(255).round().byte().permute(1, 2, 0).numpy()) for i in x]
    torch.testing.assert_close(predictor.probabilities(images), expected)


def odd_images(folder: Path) -> dict[str, Path]:
    """Images of every awkward kind, and files that are not images."""
    folder.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways
    made = {
        "rgba.png": lambda p: Image.new("RGBA", (50, 40), (255, 0, 0, 100)).save(p),
        "gray.png": lambda p: Image.new("L", (32, 32), 120).save(p),
        "thin.png": lambda p: Image.new("RGB", (7, 300), (10, 200, 10)).save(p),
        "sixteen.png": lambda p: Image.fromarray(np.arange(4096, dtype=np.uint16).reshape(64, 64) * 16).save(
            p
        ),
        "palette.gif": lambda p: Image.new("P", (20, 20), 3).save(p),
        "cmyk.jpg": lambda p: Image.new("CMYK", (40, 30), (0, 100, 200, 0)).save(p),
        "rotated.jpg": lambda p: Image.new("RGB", (60, 20), (90, 90, 200)).save(p, exif=exif),
        "big.jpg": lambda p: Image.effect_noise((1200, 900), 60).convert("RGB").save(p),
        "notes.txt": lambda p: p.write_text("not an image"),
        "fake.png": lambda p: p.write_bytes(b"text pretending to be a PNG"),
        "empty.png": lambda p: p.write_bytes(b""),
    }
    paths = {}
    for name, make in made.items():
        make(folder / name)
        paths[name] = folder / name
    truncated = folder / "truncated.png"
    truncated.write_bytes((folder / "big.jpg").read_bytes()[:2000])
    paths["truncated.png"] = truncated
    return paths


BAD = {"notes.txt", "fake.png", "empty.png", "truncated.png"}


def test_predict_classifies_odd_images_and_reports_unreadable_ones(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = odd_images(tmp_path / "images")
    argv = [str(p) for p in paths.values()] + ["--release", str(release), "--top-k", "3", "--json"]
    assert predict.main(argv) == 1  # some files could not be read
    out, err = capsys.readouterr()
    results = {Path(r["file"]).name: r for r in json.loads(out)}
    assert set(results) == set(paths)
    classes = json.loads((release / "model.json").read_text())["classes"]
    for name, result in results.items():
        if name in BAD:
            assert "error" in result and f"{name}: not classified:" in err
            continue
        probs = [p["probability"] for p in result["predictions"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert {p["label"] for p in result["predictions"]} <= set(classes)
    assert "empty" in results["empty.png"]["error"] and "truncated" in results["truncated.png"]["error"]


def test_predict_a_folder_prints_one_line_per_image(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (32, 32), "red").save(folder / "a.png")
    Image.new("RGB", (64, 48), "blue").save(folder / "sub" / "b.jpg")
    (folder / "readme.txt").write_text("skipped: not an image suffix")
    assert predict.main([str(folder), "--release", str(release), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [str(folder / "a.png"), str(folder / "sub" / "b.jpg")]
    assert all(len(line.split(", ")) == 2 for line in lines)


def test_export_fails_and_writes_nothing_when_onnx_disagrees(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dlkit.export

    real_export_onnx = dlkit.export.export_onnx

    def drifted_export(model: torch.nn.Module, *args: Any, **kwargs: Any) -> Path:
        drifted = copy.deepcopy(model)
        with torch.no_grad():
            drifted.head.weight.mul_(1.5)  # the exported graph no longer matches the model
        return real_export_onnx(drifted.eval(), *args, **kwargs)

    monkeypatch.setattr(dlkit.export, "export_onnx", drifted_export)
    out = tmp_path / "release"
    argv = [
        "--run-dir",
        str(run_dir),
        "--out",
        str(out),
        "--parity-examples",
        "32",
        *images_unless_data(tmp_path),
    ]
    with pytest.raises(UserError, match="nothing written.*disagree"):
        export.main(argv)
    assert not out.exists() and not list(tmp_path.glob(".release*"))


def test_grayscale_release_checked_on_real_or_given_images(tmp_path: Path) -> None:
    run = make_run(tmp_path / "fashion", in_channels=1, size=28, classes=FASHION_MNIST_CLASSES,
                   dataset_name="fashion_mnist")  # fmt: skip
    given = tmp_path / "given"
    given.mkdir()
    for i in range(3):
        Image.effect_noise((40, 30), 30 + 10 * i).save(given / f"{i}.png")
    out = tmp_path / "release"
    if locate("fashion_mnist") is None:  # without the data, export asks for images and uses them
        with pytest.raises(UserError, match="--images"):
            export.main(["--run-dir", str(run), "--out", str(out), "--parity-examples", "16"])
    assert (
        export.main(
            ["--run-dir", str(run), "--out", str(out), "--parity-examples", "16", "--images", str(given)]
        )
        == 0
    )
    meta = json.loads((out / "model.json").read_text())
    expected = "16 test images of Fashion-MNIST" if locate("fashion_mnist") else "3 images given"
    assert meta["parity"]["examples"] == expected and meta["parity"]["onnx_max_abs_diff"] < 1e-4
    assert export.main(["--run-dir", str(run), "--out", str(tmp_path / "plain"), "--no-onnx"]) == 0
    assert {p.name for p in (tmp_path / "plain").iterdir()} == {"model.json", "model.safetensors"}
    predictor = ImagePredictor.from_release(out, "cpu")
    x = prepare_image(Image.new("RGB", (100, 80), (200, 10, 10)), predictor.preprocessing)
    assert x.shape == (1, 28, 28)
    (top,) = predictor.predict([Image.open(given / "0.png")], top_k=1)
    assert top[0]["label"] in FASHION_MNIST_CLASSES


def test_server_answers_like_predict_and_refuses_bad_files(release: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    paths = odd_images(tmp_path / "images")
    predictor = ImagePredictor.from_release(release, "cpu")
    with TestClient(build_app(ServeConfig(release=str(release), device="cpu"))) as client:
        health = client.get("/health").json()
        assert health["model"]["classes"] == predictor.classes and health["model"]["name"] == "resnet_small"
        assert str(release) not in json.dumps(health) and str(tmp_path.parent) not in json.dumps(health)
        for name in ("rgba.png", "thin.png", "sixteen.png", "rotated.jpg", "cmyk.jpg", "big.jpg"):
            with paths[name].open("rb") as f:
                response = client.post("/predict?top_k=4", files={"file": (name, f, "image/png")})
            assert response.status_code == 200, response.text
            (expected,) = predictor.predict([Image.open(paths[name])], top_k=4)  # EXIF applied here too
            got = response.json()["predictions"]
            assert [p["label"] for p in got] == [p["label"] for p in expected]
            assert [p["probability"] for p in got] == pytest.approx([p["probability"] for p in expected])
        raw = client.post(
            "/predict", content=paths["rgba.png"].read_bytes(), headers={"content-type": "image/png"}
        )
        assert raw.status_code == 200 and len(raw.json()["predictions"]) == 3
        for name, status in (("fake.png", 415), ("empty.png", 400), ("truncated.png", 400)):
            response = client.post("/predict", files={"file": (name, paths[name].read_bytes(), "image/png")})
            assert response.status_code == status and response.json()["detail"]
        text = client.post("/predict", files={"file": ("notes.txt", b"hello", "text/plain")})
        assert text.status_code == 415 and "not an image" in text.json()["detail"]
        wrong_field = {"other": ("a.png", paths["rgba.png"].read_bytes(), "image/png")}
        assert client.post("/predict", files=wrong_field).status_code == 422
        assert client.post("/predict", json={"image": "x"}).status_code == 415
        assert client.get("/health").status_code == 200


def test_server_refuses_uploads_over_the_body_and_pixel_limits(release: Path) -> None:
    from fastapi.testclient import TestClient

    image = io.BytesIO()
    Image.new("RGB", (3000, 2000), (10, 120, 200)).save(image, "PNG")  # 6 megapixels, a few KB
    cfg = ServeConfig(release=str(release), device="cpu", max_megapixels=5.0, max_body_kb=64)
    with TestClient(build_app(cfg)) as client:
        response = client.post("/predict", files={"file": ("big.png", image.getvalue(), "image/png")})
        assert response.status_code == 413 and "megapixels" in response.json()["detail"]
        noise = io.BytesIO()
        Image.effect_noise((300, 300), 80).convert("RGB").save(noise, "PNG")  # ~270 KB of noise
        response = client.post("/predict", files={"file": ("noise.png", noise.getvalue(), "image/png")})
        assert response.status_code == 413 and "over the limit" in response.json()["detail"]
    assert ServeConfig().max_body_kb == 10240  # 10 MiB by default: a large phone photo


def test_preprocessing_turns_exif_rotated_photos_upright(tmp_path: Path) -> None:
    gradient = np.tile(np.linspace(0, 255, 60, dtype=np.uint8), (20, 1))  # (20, 60): dark left, bright right
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to view"
    Image.fromarray(gradient).convert("RGB").save(tmp_path / "sideways.jpg", exif=exif, quality=95)
    stored = Image.open(tmp_path / "sideways.jpg")
    pre = {"size": [32, 32], "channels": 3}
    pixels = Image.fromarray(np.asarray(stored))  # the same pixels, without the EXIF
    upright = pixels.transpose(Image.Transpose.ROTATE_270)  # what a viewer shows: 20 wide, 60 tall
    assert torch.equal(prepare_image(stored, pre), prepare_image(upright, pre))
    assert not torch.equal(prepare_image(stored, pre), prepare_image(pixels, pre))


@pytest.mark.parametrize("bounded", [True, False], ids=["bounded", "unbounded"])
def test_server_decodes_large_uploads_within_its_pixel_budget(
    release: Path, monkeypatch: pytest.MonkeyPatch, bounded: bool
) -> None:
    """Six concurrent 1.5-megapixel uploads: with a 2-megapixel budget they decode one at a time."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    import dlkit.serve

    real_decode, lock, now, seen = dlkit.serve.decode_image, threading.Lock(), [0], [0]

    def slow_decode(data: bytes, **kwargs: Any) -> Image.Image:
        with lock:
            now[0] += 1
            seen[0] = max(seen[0], now[0])
        try:
            time.sleep(0.3)  # long enough for the other requests to arrive meanwhile
            return real_decode(data, **kwargs)
        finally:
            with lock:
                now[0] -= 1

    monkeypatch.setattr(dlkit.serve, "decode_image", slow_decode)
    png = io.BytesIO()
    Image.new("RGB", (1500, 1000), (200, 30, 30)).save(png, "PNG")
    cfg = ServeConfig(
        release=str(release), device="cpu", max_megapixels=2.0, decode_megapixels=2.0 if bounded else 100.0
    )
    with TestClient(build_app(cfg)) as client, ThreadPoolExecutor(6) as pool:
        send = lambda _: client.post("/predict", files={"file": ("a.png", png.getvalue(), "image/png")})  # noqa: E731
        statuses = [r.status_code for r in pool.map(send, range(6))]
    assert statuses == [200] * 6
    assert seen[0] == 1 if bounded else seen[0] > 1  # the budget is what serialises them
