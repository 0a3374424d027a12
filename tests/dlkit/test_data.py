"""Datasets: verified downloads from a local server, the search path, refusing corrupt copies, loaders.

Nothing here touches the internet: downloads come from an http.server on 127.0.0.1. Tests of real
datasets skip (with the reason) where the data is absent.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import require_dataset

from dlkit import data
from dlkit.data import (
    REGISTRY,
    ChecksumError,
    DatasetInfo,
    DatasetNotFoundError,
    DownloadError,
    ImageData,
    TextData,
    download,
    fetch,
    known_digests,
    load_dataset,
    locate,
    make_synthetic_classification,
)

# ---------------------------------------------------------------------------------------------------
# Fixtures: a local HTTP server, an isolated search path, a toy registry entry


@pytest.fixture
def server(monkeypatch):
    """Serves ``routes[path] = (body, announced Content-Length or None)``; records every request path."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    routes: dict[str, tuple[bytes, int | None]] = {}
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            if self.path not in routes:
                self.send_error(404)
                return
            body, length = routes[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)  # then the connection closes (HTTP/1.0), early if length > len(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{httpd.server_address[1]}", routes=routes, requests=requests)
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """DLKIT_DATA = two empty folders a/ and b/, DLKIT_CACHE = cache/, all inside tmp_path."""
    paths = SimpleNamespace(a=tmp_path / "a", b=tmp_path / "b", cache=tmp_path / "cache")
    paths.a.mkdir()
    paths.b.mkdir()
    monkeypatch.setenv("DLKIT_DATA", f"{paths.a}{os.pathsep}{paths.b}")
    monkeypatch.setenv("DLKIT_CACHE", str(paths.cache))
    return paths


def add_checksums(monkeypatch, *lines: tuple[str, str]) -> None:
    """Accept extra (digest, "dataset/path") checksums for this test only."""
    monkeypatch.setattr(data, "_CHECKSUM_LINES", [*data._CHECKSUM_LINES, *lines])


def toy_entry(monkeypatch, content: bytes, url: str = "") -> DatasetInfo:
    """Register dataset "toy": one file toy/toy.txt with the sha256 of ``content``."""
    add_checksums(monkeypatch, (hashlib.sha256(content).hexdigest(), "toy/toy.txt"))
    info = DatasetInfo(
        "toy",
        "a toy dataset",
        "https://example.org/toy",
        folders=("toy",),
        forms=(("toy.txt",),),
        loader=lambda paths, split: TextData(paths[0].read_text(), str(paths[0])),
        urls={"toy.txt": url} if url else {},
    )
    monkeypatch.setitem(REGISTRY, "toy", info)
    return info


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------------------------------------------
# download()

BODY = bytes(range(256)) * 40  # 10,240 bytes
BODY_SHA256 = hashlib.sha256(BODY).hexdigest()


def test_download_verifies_then_renames(server, tmp_path):
    server.routes["/good.bin"] = (BODY, None)
    dest = tmp_path / "dl" / "good.bin"
    assert download(f"{server.url}/good.bin", dest, BODY_SHA256) == dest
    assert dest.read_bytes() == BODY
    assert leftovers(dest.parent) == ["good.bin"]  # no temporary file left


def test_download_checksum_mismatch_keeps_nothing(server, tmp_path):
    server.routes["/good.bin"] = (BODY, None)
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as err:
        download(f"{server.url}/good.bin", tmp_path / "good.bin", wrong)
    assert wrong in str(err.value) and BODY_SHA256 in str(err.value)  # expected and got
    assert leftovers(tmp_path) == []


def test_truncated_transfer_keeps_nothing(server, tmp_path):
    server.routes["/cut.bin"] = (BODY, len(BODY) + 5000)  # announces more than it sends, then closes
    with pytest.raises(DownloadError) as err:
        download(f"{server.url}/cut.bin", tmp_path / "cut.bin", BODY_SHA256)
    assert "10,240" in str(err.value) and "15,240" in str(err.value)  # received vs expected
    assert leftovers(tmp_path) == []


def test_http_error_is_a_download_error(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download(f"{server.url}/missing.bin", tmp_path / "missing.bin", BODY_SHA256)
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------------
# The search path, fetch(), and corrupt copies


def test_fetch_downloads_into_the_cache_once(server, roots, monkeypatch):
    server.routes["/toy.txt"] = (b"hello toy", None)
    toy_entry(monkeypatch, b"hello toy", url=f"{server.url}/toy.txt")
    assert locate("toy") is None
    assert fetch("toy") == roots.cache / "toy"
    assert (roots.cache / "toy" / "toy.txt").read_bytes() == b"hello toy"
    assert locate("toy") == roots.cache / "toy"
    assert load_dataset("toy").text == "hello toy"
    assert server.requests == ["/toy.txt"]  # found in the cache the second time


def test_a_copy_on_dlkit_data_comes_before_the_cache(roots, monkeypatch):
    toy_entry(monkeypatch, b"local")
    for folder in (roots.b / "toy", roots.cache / "toy"):
        folder.mkdir(parents=True)
        (folder / "toy.txt").write_bytes(b"local")
    assert locate("toy") == roots.b / "toy"
    assert [str(p) for p in data.data_search_path()] == [str(roots.a), str(roots.b), str(roots.cache)]


def test_failed_download_says_what_happened(server, roots, monkeypatch):
    toy_entry(monkeypatch, b"hello toy", url=f"{server.url}/gone.txt")
    with pytest.raises(DatasetNotFoundError, match="downloading failed.*404"):
        fetch("toy")
    assert leftovers(roots.cache / "toy") == []


def test_missing_dataset_lists_every_place_searched(roots):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("tiny_shakespeare", download=False)
    message = str(err.value)
    for place in ("a/tiny_shakespeare", "b/tiny_shakespeare", "a/tinyshakespeare", "cache/tiny_shakespeare"):
        assert place in message
    last = message.splitlines()[-1]  # dlkit doctor shows the last line
    assert last.startswith("How to get it")
    assert "https://raw.githubusercontent.com/karpathy/char-rnn" in last
    assert "DLKIT_DATA=/path/to/folder holding tiny_shakespeare/input.txt" in last


def test_missing_fashion_mnist_names_the_debian_package(roots, monkeypatch):
    info = REGISTRY["fashion_mnist"]
    monkeypatch.setitem(REGISTRY, "fashion_mnist", replace(info, system_dirs=(str(roots.a / "none"),)))
    with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist"):
        fetch("fashion_mnist", download=False)


def test_a_corrupt_local_copy_is_refused(roots):
    (roots.a / "tiny_shakespeare").mkdir()
    (roots.a / "tiny_shakespeare" / "input.txt").write_text("To be or not to be, rewritten.")
    with pytest.raises(ChecksumError, match=str(roots.a / "tiny_shakespeare" / "input.txt")):
        locate("tiny_shakespeare")
    with pytest.raises(ChecksumError):
        load_dataset("tiny_shakespeare")  # not downloaded over, not used


def test_a_corrupt_copy_is_skipped_with_a_warning_when_a_good_one_exists(roots, monkeypatch):
    toy_entry(monkeypatch, b"good")
    for root, content in ((roots.a, b"bad!"), (roots.b, b"good")):
        (root / "toy").mkdir()
        (root / "toy" / "toy.txt").write_bytes(content)
    with pytest.warns(UserWarning, match=str(roots.a / "toy" / "toy.txt")):
        assert locate("toy") == roots.b / "toy"


def test_every_registered_file_has_a_checksum():
    for info in REGISTRY.values():
        for form in info.forms:
            for path in form:
                digests = known_digests(info.name, path)
                assert path.endswith("/") or digests, f"{info.name}/{path} has no checksum"
                assert all(len(d) in (32, 64) and int(d, 16) >= 0 for d in digests)
        for path in info.urls:  # downloads are checked with a sha256
            assert len(known_digests(info.name, path)[0]) == 64


# ---------------------------------------------------------------------------------------------------
# Loaders on small data made here


def test_digits_split_shapes_and_ranges():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.x.shape == (1437, 1, 8, 8) and train.x.dtype == torch.float32
    assert train.y.dtype == torch.int64 and train.classes == [str(d) for d in range(10)]
    assert train.x.min() == 0.0 and train.x.max() == 1.0
    assert set(test.y.bincount().tolist()) <= {35, 36, 37}  # stratified: ~36 of each digit
    assert torch.equal(load_dataset("digits", "test").x, test.x)  # fixed split
    assert len(train.tensor_dataset()) == 1437 and locate("digits").name == "digits.csv.gz"


def test_subset_is_stratified_and_repeatable():
    y = torch.tensor([0] * 600 + [1] * 300 + [2] * 100)
    full = ImageData(torch.rand(1000, 1, 2, 2), y, ["a", "b", "c"], "made up")
    sub = full.subset(100, seed=1)
    assert sub.y.bincount().tolist() == [60, 30, 10]
    assert torch.equal(sub.x, full.subset(100, seed=1).x)
    assert not torch.equal(sub.x, full.subset(100, seed=2).x)
    assert len(full.subset(5000)) == 1000


def test_synthetic_classification_is_for_tests():
    x, y = make_synthetic_classification(90, num_features=5, num_classes=3, seed=0)
    assert x.shape == (90, 5) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y.bincount().tolist() == [30, 30, 30]
    assert torch.equal(x, make_synthetic_classification(90, num_features=5, num_classes=3, seed=0)[0])
    assert "UNIT TESTS ONLY" in make_synthetic_classification.__doc__


def test_cifar10_from_a_tarball_in_the_official_layout(roots, monkeypatch):
    tar_path = roots.a / "cifar10" / "cifar-10-python.tar.gz"
    tar_path.parent.mkdir()
    with tarfile.open(tar_path, "w:gz") as tar:
        for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
            pixels = np.zeros((2, 3072), np.uint8)
            pixels[0, :1024] = 255  # image 0 is pure red: the red plane comes first
            blob = pickle.dumps({b"data": pixels, b"labels": [i, 9]})
            member = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            member.size = len(blob)
            tar.addfile(member, io.BytesIO(blob))
    monkeypatch.setattr(
        data, "_CHECKSUM_LINES", [line for line in data._CHECKSUM_LINES if "cifar10/" not in line[1]]
    )
    add_checksums(
        monkeypatch, (hashlib.sha256(tar_path.read_bytes()).hexdigest(), "cifar10/cifar-10-python.tar.gz")
    )
    train, test = load_dataset("cifar10", "train"), load_dataset("cifar10", "test")
    assert train.x.shape == (10, 3, 32, 32) and len(test) == 2
    assert train.y.tolist() == [0, 9, 1, 9, 2, 9, 3, 9, 4, 9] and test.classes[9] == "truck"
    assert train.x[0, 0].min() == 1.0 and train.x[0, 1:].max() == 0.0


def make_jpeg_zip(path: Path, per_class: int) -> None:
    from PIL import Image

    with zipfile.ZipFile(path, "w") as zf:
        for c, cls in enumerate(data.CIFAR10_CLASSES):
            for k in range(per_class):
                buffer = io.BytesIO()
                Image.new("RGB", (32, 32), (25 * c, 0, 255)).save(buffer, format="JPEG", quality=95)
                zf.writestr(f"{cls}/{k:04d}.jpg", buffer.getvalue())


def test_cifar10_jpeg_decodes_once_then_loads_from_the_cache(roots, monkeypatch):
    folder = roots.a / "cifar10_jpeg"
    folder.mkdir()
    make_jpeg_zip(folder / "train.zip", per_class=3)
    make_jpeg_zip(folder / "test.zip", per_class=1)
    monkeypatch.setattr(
        data, "_CHECKSUM_LINES", [line for line in data._CHECKSUM_LINES if "jpeg/" not in line[1]]
    )
    for name in ("train.zip", "test.zip"):
        add_checksums(
            monkeypatch, (hashlib.sha256((folder / name).read_bytes()).hexdigest(), f"cifar10_jpeg/{name}")
        )
    train = load_dataset("cifar10_jpeg", "train")
    assert train.x.shape == (30, 3, 32, 32) and train.y.bincount().tolist() == [3] * 10
    assert "CIFAR-10 (JPEG)" in train.source and len(load_dataset("cifar10_jpeg", "test")) == 10
    blue = train.x[:, 2].mean(dim=(1, 2))  # every image is blue 255, red 25 * class
    assert blue.min() > 0.95
    assert torch.allclose(train.x[:, 0].mean(dim=(1, 2)), train.y * 25 / 255, atol=0.03)
    assert len(list((roots.cache / "decoded").glob("cifar10_jpeg-*.pt"))) == 2

    monkeypatch.setattr(data, "_decode_jpeg_zip", lambda path: pytest.fail("decoded again"))
    assert torch.equal(load_dataset("cifar10_jpeg", "train").x, train.x)

    with pytest.raises(DatasetNotFoundError, match="cifar10_jpeg copy was found"):
        load_dataset("cifar10", download=False)


def test_an_incomplete_extracted_imdb_folder_is_refused(roots):
    for split, cls in (("train", "neg"), ("train", "pos"), ("test", "neg"), ("test", "pos")):
        folder = roots.a / "imdb" / "aclImdb" / split / cls
        folder.mkdir(parents=True)
        (folder / "0_1.txt").write_text("A review.")
    with pytest.raises(ValueError, match="holds 1 reviews, not 12,500"):
        load_dataset("imdb", "test")


# ---------------------------------------------------------------------------------------------------
# Real datasets (skipped where absent; CI has them in ../shared/data and the Debian package)


@pytest.mark.needs_data
def test_fashion_mnist():
    require_dataset("fashion_mnist")
    train, test = load_dataset("fashion_mnist", "train"), load_dataset("fashion_mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.x.shape == (60000, 1, 28, 28) and train.x.dtype == torch.float32
    assert train.x.min() >= 0.0 and train.x.max() <= 1.0
    assert train.y.bincount().tolist() == [6000] * 10 and train.classes[9] == "Ankle boot"


@pytest.mark.needs_data
def test_tiny_shakespeare():
    require_dataset("tiny_shakespeare")
    text = load_dataset("tiny_shakespeare").text
    assert len(text) == 1_115_394 and text.startswith("First Citizen:")


@pytest.mark.needs_data
def test_imdb(tmp_path, monkeypatch):
    require_dataset("imdb")
    monkeypatch.setenv("DLKIT_CACHE", str(tmp_path))  # the parsed-reviews cache goes here
    train, test = load_dataset("imdb", "train"), load_dataset("imdb", "test")
    expected = 24998 if "labeled" in train.source else 25000  # the mirror lacks 2 reviews per split
    assert (len(train), len(test)) == (expected, expected)
    assert train.classes == ["neg", "pos"] and train.labels.dtype == torch.int64
    assert train.labels.bincount()[0] == 12500 and isinstance(train.texts[0], str)
    assert train.labels[:100].float().mean().item() == pytest.approx(0.5, abs=0.2)  # shuffled, not sorted


@pytest.mark.needs_data
def test_movielens_small():
    require_dataset("movielens_small")
    ratings = load_dataset("movielens_small")
    assert len(ratings) == (100836 if ratings.source.endswith(".zip") else 100004)
    assert ratings.num_users == int(ratings.user.max()) + 1 and ratings.item.max() < ratings.num_items
    assert ratings.rating.min() >= 0.5 and ratings.rating.max() <= 5.0
    assert ratings.titles[0] == "Toy Story (1995)"


@pytest.mark.needs_data
@pytest.mark.slow
def test_cifar10_jpeg(tmp_path, monkeypatch):
    require_dataset("cifar10_jpeg")
    monkeypatch.setenv("DLKIT_CACHE", str(tmp_path))  # the decoded cache goes here, not to ~/.cache
    train, test = load_dataset("cifar10_jpeg", "train"), load_dataset("cifar10_jpeg", "test")
    assert (len(train), len(test)) == (50000, 10000)
    assert train.x.shape == (50000, 3, 32, 32) and train.y.bincount().tolist() == [5000] * 10
    assert "CIFAR-10 (JPEG)" in train.source
    start = time.perf_counter()
    again = load_dataset("cifar10_jpeg", "test")
    assert time.perf_counter() - start < 2.0  # from the decoded cache (well under 1 s on an idle machine)
    assert torch.equal(again.x, test.x)


def test_choose_dataset_falls_back_only_in_quick_mode_without_a_local_copy(tmp_path, monkeypatch):
    from dlkit.data import choose_dataset

    monkeypatch.setenv("DLKIT_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("DLKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DLKIT_SYSTEM_DATA", "0")
    assert choose_dataset("fashion_mnist", "digits", quick=True) == "digits"
    assert choose_dataset("fashion_mnist", "digits", quick=False) == "fashion_mnist"  # full mode downloads
    assert choose_dataset("digits", "fashion_mnist", quick=True) == "digits"  # ships with scikit-learn


def test_load_train_test_cuts_each_split_to_a_stratified_subset():
    from dlkit.data import load_train_test

    train, test = load_train_test("digits", num_train=200, num_test=100, seed=1)
    assert (len(train), len(test)) == (200, 100)
    assert set(train.y.tolist()) == set(range(10))  # every class kept
    full_train, _ = load_train_test("digits")
    assert len(full_train) > 1000


def test_a_truncated_decoded_cache_is_rebuilt_not_a_crash(roots, monkeypatch):
    folder = roots.a / "cifar10_jpeg"
    folder.mkdir()
    make_jpeg_zip(folder / "train.zip", per_class=2)
    make_jpeg_zip(folder / "test.zip", per_class=1)
    monkeypatch.setattr(
        data, "_CHECKSUM_LINES", [line for line in data._CHECKSUM_LINES if "jpeg/" not in line[1]]
    )
    for name in ("train.zip", "test.zip"):
        add_checksums(
            monkeypatch, (hashlib.sha256((folder / name).read_bytes()).hexdigest(), f"cifar10_jpeg/{name}")
        )
    first = load_dataset("cifar10_jpeg", "test")
    (cached,) = (roots.cache / "decoded").glob("cifar10_jpeg-test-*.pt")
    cached.write_bytes(cached.read_bytes()[:200])  # as a kill in the middle of writing it would
    with pytest.warns(UserWarning, match="corrupt"):
        again = load_dataset("cifar10_jpeg", "test")
    assert torch.equal(again.x, first.x)
    assert torch.load(cached, weights_only=True)["y"].shape == (10,)  # and the cache is whole again


def test_quick_mode_says_a_corrupt_copy_failed_its_checksum(roots, monkeypatch, capsys):
    from dlkit.data import choose_dataset

    monkeypatch.setenv("DLKIT_SYSTEM_DATA", "0")
    (roots.a / "tiny_shakespeare").mkdir()
    (roots.a / "tiny_shakespeare" / "input.txt").write_text("not shakespeare")
    assert choose_dataset("tiny_shakespeare", "digits", quick=True) == "digits"
    out = capsys.readouterr().out
    assert "failed its checksum" in out and "not on this machine" not in out


def test_a_missing_dataset_is_a_user_error_that_mentions_quick_mode(roots):
    from dlkit.errors import UserError

    with pytest.raises(UserError, match="--quick runs every lesson and project offline"):
        fetch("imdb", download=False)


def test_anomaly_sets_load_from_npz_and_mat(roots, monkeypatch):
    from scipy.io import savemat

    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    y = np.array([0, 0, 1, 0, 1, 0])
    (roots.a / "adbench").mkdir()
    np.savez(roots.a / "adbench" / "38_thyroid.npz", X=x, y=y)
    (roots.a / "odds").mkdir()
    savemat(roots.a / "odds" / "cardio.mat", {"X": x, "y": y[:, None].astype(np.float64)})
    for name, path in (("adbench_thyroid", "adbench/38_thyroid.npz"), ("odds_cardio", "odds/cardio.mat")):
        monkeypatch.setattr(
            data,
            "_CHECKSUM_LINES",
            [line for line in data._CHECKSUM_LINES if line[1] != f"{name}/{Path(path).name}"],
        )
        add_checksums(
            monkeypatch,
            (hashlib.sha256((roots.a / path).read_bytes()).hexdigest(), f"{name}/{Path(path).name}"),
        )
    for name in ("adbench_thyroid", "odds_cardio"):
        rows = load_dataset(name, "all")
        assert rows.x.dtype == torch.float32 and rows.x.shape == (6, 2)
        assert rows.y.tolist() == y.tolist() and "2 " in rows.source  # 2 anomalies named


@pytest.mark.needs_data
def test_the_fifteen_anomaly_sets():
    from dlkit.data import ANOMALY_SETS

    assert len(ANOMALY_SETS) == 15
    require_dataset("adbench_thyroid")
    thyroid = load_dataset("adbench_thyroid", "all")
    assert thyroid.x.shape == (3772, 6) and int(thyroid.y.sum()) == 93
    require_dataset("odds_cardio")
    cardio = load_dataset("odds_cardio", "all")
    assert cardio.x.shape == (1831, 21) and int(cardio.y.sum()) == 176


def _ml1m_zip() -> bytes:
    """A tiny zip in ml-1m's layout: ``::``-separated .dat files, a Latin-1 title."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", "1::10::5::978300760\n1::20::3::978302109\n7::10::4::978301968\n")
        zf.writestr(
            "ml-1m/movies.dat",
            "10::Toy Story (1995)::Animation\n20::Amélie (2001)::Comedy\n".encode("latin-1"),
        )
    return buffer.getvalue()


def test_movielens_1m_downloads_verified_from_the_official_url_and_parses_its_format(
    server, roots, monkeypatch
):
    body = _ml1m_zip()
    server.routes["/ml-1m.zip"] = (body, None)
    info = REGISTRY["movielens_1m"]
    monkeypatch.setitem(
        REGISTRY, "movielens_1m", replace(info, urls={"ml-1m.zip": f"{server.url}/ml-1m.zip"})
    )
    monkeypatch.setattr(
        data,
        "_CHECKSUM_LINES",
        [line for line in data._CHECKSUM_LINES if line[1] != "movielens_1m/ml-1m.zip"],
    )
    add_checksums(monkeypatch, (hashlib.sha256(body).hexdigest(), "movielens_1m/ml-1m.zip"))
    ratings = load_dataset("movielens_1m")
    assert server.requests == ["/ml-1m.zip"] and (roots.cache / "movielens" / "ml-1m.zip").exists()
    assert ratings.user.tolist() == [0, 0, 1] and ratings.item.tolist() == [0, 1, 0]
    assert ratings.rating.tolist() == [5.0, 3.0, 4.0] and ratings.titles == [
        "Toy Story (1995)",
        "Amélie (2001)",
    ]
    assert ratings.movie_ids.tolist() == [10, 20] and ratings.timestamp[0] == 978300760
    assert "MovieLens 1M (3 ratings)" in ratings.source
    again = load_dataset("movielens_1m")  # from the decoded cache this time
    assert torch.equal(again.item, ratings.item) and server.requests == ["/ml-1m.zip"]
    assert known_digests("movielens_25m", "ml-25m.zip")  # the real ones are registered too
