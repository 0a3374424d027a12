"""Datasets: where each comes from, where a copy may already be, and how it loads as tensors.

Each entry of :data:`REGISTRY` knows the dataset's official source (URLs, and in :data:`CHECKSUMS` the
sha256 of every file we accept), the folders a copy may lie in (under each root of the data search
path, a Debian package's folder, torchvision's layout) and a loader::

    train = load_dataset("fashion_mnist", split="train")  # x (60000, 1, 28, 28) in [0, 1], y (60000,)
    small = train.subset(1000).tensor_dataset()

The data search path is ``DLKIT_DATA`` (folders separated by ``os.pathsep``), then the cache
(``DLKIT_CACHE`` or ``~/.cache/dlkit``), then the dataset's system folders. A dataset found nowhere is
downloaded into the cache. A file whose checksum we do not know is never used silently.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import http.client
import importlib.util
import io
import itertools
import os
import pickle
import tarfile
import tempfile
import urllib.request
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from dlkit.errors import UserError
from dlkit.progress import progress, progress_enabled


class DatasetNotFoundError(UserError, FileNotFoundError):
    """No verified copy was found and none could be downloaded; the message says where we looked."""


class ChecksumError(UserError, ValueError):
    """A file's checksum is not one we know: it is corrupt, truncated or another version."""


class DownloadError(UserError, OSError):
    """A download failed or stopped before all its bytes arrived."""


# ---------------------------------------------------------------------------------------------------
# What the loaders return


@dataclass
class ImageData:
    """Labelled images: ``x`` float32 (N, C, H, W) in [0, 1], ``y`` int64 (N,) indexing ``classes``."""

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    source: str  # where the data came from, for lesson.uses_data()

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, n: int, seed: int = 0) -> ImageData:
        """At most ``n`` random examples with the class mix of the whole (stratified)."""
        idx = _stratified_indices(self.y, n, seed)
        return ImageData(self.x[idx], self.y[idx], self.classes, f"{self.source}; subset of {len(idx):,}")

    def tensor_dataset(self) -> TensorDataset:
        return TensorDataset(self.x, self.y)


@dataclass
class TextData:
    """One long text, e.g. for a character-level language model (a lesson holds out its own part)."""

    text: str
    source: str

    def __len__(self) -> int:
        return len(self.text)


@dataclass
class TextClassificationData:
    """Texts with int64 ``labels`` (N,) indexing ``classes``."""

    texts: list[str]
    labels: torch.Tensor
    classes: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, n: int, seed: int = 0) -> TextClassificationData:
        """At most ``n`` random examples with the class mix of the whole (stratified)."""
        idx = _stratified_indices(self.labels, n, seed)
        texts = [self.texts[i] for i in idx.tolist()]
        return TextClassificationData(
            texts, self.labels[idx], self.classes, f"{self.source}; subset of {len(idx):,}"
        )


@dataclass
class RatingsData:
    """MovieLens ratings as parallel (N,) tensors, one entry per rating.

    ``user`` and ``item`` are dense indices from 0; ``item`` indexes ``titles``, ``genres`` and
    ``movie_ids``, which hold one entry per movie of movies.csv, in its order.
    """

    user: torch.Tensor  # (N,) int64
    item: torch.Tensor  # (N,) int64
    rating: torch.Tensor  # (N,) float32, 0.5 to 5.0 stars
    timestamp: torch.Tensor  # (N,) int64, seconds since 1970-01-01 UTC
    titles: list[str]
    genres: list[str]  # e.g. "Adventure|Animation|Children"
    movie_ids: torch.Tensor  # (num_items,) int64, the MovieLens movieId of each item
    source: str

    def __len__(self) -> int:
        return len(self.rating)

    @property
    def num_users(self) -> int:
        return int(self.user.max()) + 1

    @property
    def num_items(self) -> int:
        return len(self.titles)


@dataclass
class TabularData:
    """Rows of numeric features ``x`` float32 (N, F) with labels ``y`` int64 (N,); for the anomaly sets
    1 = anomaly (outlier), 0 = normal. ``features`` names the columns where the source does."""

    x: torch.Tensor
    y: torch.Tensor
    source: str
    features: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)


def _stratified_indices(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """At most ``n`` random indices whose class counts are proportional to ``y``'s, in random order."""
    if n <= 0:
        raise ValueError(f"a subset needs a positive size, got {n}")
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    ys = y[perm]
    counts = torch.bincount(ys)
    order = torch.argsort(ys, stable=True)
    rank = torch.empty_like(perm)  # the rank of each shuffled example within its class
    rank[order] = torch.arange(len(ys)) - (torch.cumsum(counts, 0) - counts)[ys[order]]
    # Taking examples by rank relative to class size draws every class at the same rate.
    chosen = torch.argsort((rank.double() + 0.5) / counts[ys], stable=True)[:n]
    return perm[chosen.sort().values]


def make_synthetic_classification(
    n: int, num_features: int = 20, num_classes: int = 3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs for UNIT TESTS ONLY, never for lessons: x float32 (n, num_features), y int64 (n,).

    Each class is a unit-variance cloud around its own random centre, so a linear model separates them.
    """
    g = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(num_classes, num_features, generator=g)
    y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    return centres[y] + torch.randn(n, num_features, generator=g), y


# ---------------------------------------------------------------------------------------------------
# Where data is looked for, and how it is checked


@dataclass(frozen=True)
class DatasetInfo:
    """A registry entry: the forms a dataset takes on disk, where to look for them, and its loader.

    A form is a complete set of paths relative to a folder; a path ending in "/" is an extracted
    folder, checked by its loader; every other path must have its checksums in :data:`CHECKSUMS`.
    """

    name: str
    title: str
    homepage: str
    folders: tuple[str, ...]  # looked for under each root of the data search path ("." = the root)
    forms: tuple[tuple[str, ...], ...]
    loader: Callable[[list[Path], str], Any]  # (the verified paths of one form, split) -> data
    urls: dict[str, str] = field(default_factory=dict)  # path -> official URL: the form fetch() downloads
    splits: tuple[str, ...] = ("train", "test")
    system_dirs: tuple[str, ...] = ()
    advice: str = ""  # another way to get it, e.g. a Debian package
    bundled: Callable[[], Path] | None = None  # ships inside a Python package: nothing to find


def cache_dir() -> Path:
    """Where downloads and decoded caches go: ``DLKIT_CACHE``, else ``~/.cache/dlkit``."""
    return Path(os.environ.get("DLKIT_CACHE") or Path.home() / ".cache" / "dlkit").expanduser()


def data_search_path() -> list[Path]:
    """The roots searched for datasets: each ``DLKIT_DATA`` entry, then :func:`cache_dir`."""
    entries = os.environ.get("DLKIT_DATA", "").split(os.pathsep)
    return [Path(e).expanduser() for e in entries if e] + [cache_dir()]


_DIGESTS: dict[tuple[str, str, int, int, int], str] = {}


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file, remembered per (path, size, mtime, inode) so a process hashes it once."""
    st = path.stat()
    key = (str(path), algorithm, st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _DIGESTS:
        h = hashlib.new(algorithm)
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def known_digests(name: str, path: str) -> list[str]:
    """The digests :data:`CHECKSUMS` accepts for ``path`` of dataset ``name``, the official one first."""
    return [digest for digest, key in _CHECKSUM_LINES if key == f"{name}/{path}"]


def _problem(info: DatasetInfo, folder: Path, path: str) -> str | None:
    """Why ``folder/path`` must not be used, or None when its checksum is one we know."""
    if path.endswith("/"):
        return None
    known = known_digests(info.name, path)
    algorithm = "md5" if len(known[0]) == 32 else "sha256"  # md5 only where no sha256 is published
    got = file_digest(folder / path, algorithm)
    return None if got in known else f"{folder / path}: {algorithm} is {got}, expected {' or '.join(known)}"


def _candidates(info: DatasetInfo) -> list[Path]:
    """Every folder where ``info`` may lie, in search order.

    System locations (such as Debian's /usr/share/datasets) come last; ``DLKIT_SYSTEM_DATA=0`` leaves
    them out, e.g. to see what a machine without them would do.
    """
    system = [] if os.environ.get("DLKIT_SYSTEM_DATA") == "0" else [Path(d) for d in info.system_dirs]
    return [root / f for root in data_search_path() for f in info.folders] + system


def _find(info: DatasetInfo) -> tuple[Path, tuple[str, ...]] | None:
    """The first folder holding a complete, verified form of ``info``, and that form.

    A copy that fails its checksum is skipped with a warning when a good one is found, else an error.
    """
    problems: list[str] = []
    for folder in _candidates(info):
        for form in info.forms:
            if not all((folder / path).exists() for path in form):
                continue
            found = [p for path in form if (p := _problem(info, folder, path))]
            if not found:
                for p in problems:
                    warnings.warn(f"{info.name}: skipped a copy that failed its checksum: {p}", stacklevel=3)
                return folder, form
            problems += found
    if problems:
        raise ChecksumError(
            f"{info.name}: refusing a local copy that failed its checksum:\n  "
            + "\n  ".join(problems)
            + "\nDelete or replace the file (or take its folder off DLKIT_DATA), then try again."
        )
    return None


def _info(name: str) -> DatasetInfo:
    if name not in REGISTRY:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def locate(name: str) -> Path | None:
    """The folder holding a verified local copy of ``name`` (for "digits", its bundled file), or None."""
    info = _info(name)
    if info.bundled is not None:
        return info.bundled()
    found = _find(info)
    return found[0] if found else None


def _stream(url: str, out: BinaryIO, desc: str) -> tuple[int, int | None, str]:
    """Copy ``url`` into ``out`` with a progress bar; return (bytes received, Content-Length, sha256)."""
    hasher, received, expected = hashlib.sha256(), 0, None
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "dlkit"})
        with urllib.request.urlopen(request, timeout=60) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length else None
            bar = tqdm(total=expected, unit="B", unit_scale=True, desc=desc, disable=not progress_enabled())
            with bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    hasher.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as e:  # no network, HTTP errors, a connection cut short
        total = f"{expected:,}" if expected is not None else "?"
        raise DownloadError(f"{url}: transfer failed after {received:,} of {total} bytes: {e!r}") from e
    return received, expected, hasher.hexdigest()


def download(url: str, dest: str | os.PathLike[str], sha256: str) -> Path:
    """Download ``url`` to ``dest``, verified; return ``dest``.

    Streams into a temporary file beside ``dest``, hashing as it goes, checks the byte count against
    Content-Length and the sha256, then renames onto ``dest``. On DownloadError or ChecksumError
    neither ``dest`` nor the temporary file is left behind.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            received, expected, got = _stream(url, out, dest.name)
        if expected is not None and received != expected:
            raise DownloadError(f"{url}: transfer incomplete: received {received:,} of {expected:,} bytes")
        if got != sha256:
            raise ChecksumError(
                f"{url}: sha256 mismatch: expected {sha256}, got {got} ({received:,} bytes); nothing was kept"
            )
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    file_digest(dest)  # remember the hash of the file just verified
    return dest


_download = download  # fetch()'s parameter ``download`` hides the function


def fetch(name: str, download: bool = True) -> Path:
    """:func:`locate` ``name``, else download it into the cache, else raise DatasetNotFoundError."""
    info = _info(name)
    if (where := locate(name)) is not None:
        return where
    if not download:
        reason = "downloading is turned off (download=False)"
    elif not info.urls:
        reason = "it has no public download"
    else:
        dest = cache_dir() / info.folders[0]
        try:
            for path, url in info.urls.items():
                if not (dest / path).exists() or _problem(info, dest, path):
                    _download(url, dest / path, known_digests(name, path)[0])
            return dest
        except DownloadError as e:
            reason = f"downloading failed: {e}"
    raise DatasetNotFoundError(_not_found_message(info, reason))


def _not_found_message(info: DatasetInfo, reason: str) -> str:
    """Why, every place searched, and a last line saying how to get the data."""
    wanted = " | ".join(", ".join(form) for form in info.forms)
    places = "".join(f"\n  {p}" for p in _candidates(info))
    lines = [
        f"dataset {info.name!r} ({info.title}) was not found and {reason}.",
        f"Looked for {wanted} in:{places}",
    ]
    sibling = {"cifar10": "cifar10_jpeg", "cifar10_jpeg": "cifar10"}.get(info.name, "")
    if sibling and (sibling_at := _quiet_locate(sibling)):
        lines.append(f"Note: a {sibling} copy was found at {sibling_at}: load_dataset({sibling!r}) uses it.")
    ways = [f"download {' '.join(info.urls.values())}"] if info.urls else []
    ways += [info.advice] if info.advice else []
    ways.append(f"set DLKIT_DATA=/path/to/folder holding {info.folders[0]}/{info.forms[0][0]}")
    lines.append(
        f"How to get it ({info.homepage}): "
        + "; or ".join(ways)
        + " (--quick runs every lesson and project offline, without it)"
    )
    return "\n".join(lines)


def choose_dataset(preferred: str, fallback: str, *, quick: bool) -> str:
    """The dataset a lesson uses: ``preferred`` in full mode (downloaded when missing), and in quick
    mode only when a local copy exists, else ``fallback`` (one that ships, such as "digits").

    Quick mode thus never needs the network, and still uses the real data when the machine has it.
    """
    if not quick:
        return preferred
    try:
        if locate(preferred) is not None:
            return preferred
        why = "is not on this machine"
    except ChecksumError as e:
        why = "is on this machine but failed its checksum (" + str(e).splitlines()[1].strip() + ")"
    print(f"quick mode: {preferred} {why}, so this run uses {fallback} instead")
    return fallback


def load_train_test(name: str, *, num_train: int = 0, num_test: int = 0, seed: int = 0) -> tuple[Any, Any]:
    """Both splits of ``name``, each cut to a stratified random subset of ``num_train`` / ``num_test``
    examples (0: all of it)."""
    train, test = load_dataset(name, split="train"), load_dataset(name, split="test")
    return (train.subset(num_train, seed=seed) if num_train else train), (
        test.subset(num_test, seed=seed) if num_test else test
    )


def _quiet_locate(name: str) -> Path | None:
    try:
        return locate(name)
    except ChecksumError:
        return None


def load_dataset(name: str, split: str = "train", download: bool = True) -> Any:
    """Load dataset ``name`` as ImageData, TextData, TextClassificationData or RatingsData.

    Image sets and "imdb" have a "train" and a "test" split; "tiny_shakespeare" and "movielens_small"
    are one whole set ("train" or "all"), of which a lesson holds out its own part.
    """
    info = _info(name)
    if split not in info.splits:
        raise ValueError(f"{name} has the splits {info.splits}, not {split!r}")
    if info.bundled is not None:
        return info.loader([info.bundled()], split)
    found = _find(info)
    if found is None:
        fetch(name, download)  # downloads into the cache, or raises DatasetNotFoundError
        found = _find(info)
    if found is None:
        raise DatasetNotFoundError(f"{name}: fetch() returned, yet no verified copy is found")
    folder, form = found
    return info.loader([folder / path for path in form], split)


# ---------------------------------------------------------------------------------------------------
# Loaders: (the verified paths of one form, split) -> data

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
FASHION_MNIST_CLASSES += ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IMDB_CLASSES = ["neg", "pos"]


def _shuffled(n: int) -> torch.Tensor:
    """A fixed random order (seed 0) for sets stored sorted by class, so that a prefix is a fair sample."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))


def _sklearn_digits() -> Path:
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it (slow)
    if spec is None or spec.origin is None:
        raise DatasetNotFoundError("digits come with scikit-learn: pip install scikit-learn")
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


def _load_digits(paths: list[Path], split: str) -> ImageData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train_idx, test_idx = train_test_split(
        np.arange(len(digits.target)), test_size=0.2, stratify=digits.target, random_state=0
    )
    idx = torch.from_numpy(train_idx if split == "train" else test_idx)
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)  # (1797, 1, 8, 8), was 0..16
    y = torch.from_numpy(digits.target.astype(np.int64))
    source = f"scikit-learn load_digits, {split} split ({len(idx):,} images; stratified 80/20, seed 0)"
    return ImageData(x[idx], y[idx], [str(d) for d in range(10)], source)


def _read_idx(path: Path) -> np.ndarray:
    """A gzipped idx file as uint8: labels (N,) (magic 2049) or images (N, rows, cols) (magic 2051)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, count = np.frombuffer(raw, ">u4", count=2)  # big-endian header
    if magic not in (2049, 2051):
        raise ValueError(f"{path}: not an idx file (magic number {magic})")
    shape = (count,) if magic == 2049 else (count, *np.frombuffer(raw, ">u4", count=2, offset=8))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * len(shape)).reshape(shape).copy()


def _load_fashion_mnist(paths: list[Path], split: str) -> ImageData:
    folder, prefix = paths[0].parent, "train" if split == "train" else "t10k"
    images = _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")  # (N, 28, 28)
    labels = _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")  # (N,)
    x = torch.from_numpy(images).unsqueeze(1).float().div_(255)  # (N, 1, 28, 28)
    source = f"Fashion-MNIST {split} ({len(labels):,} images) from {folder}"
    return ImageData(x, torch.from_numpy(labels.astype(np.int64)), list(FASHION_MNIST_CLASSES), source)


def _tar_bytes(tar: tarfile.TarFile, member: str | tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    if f is None:
        raise ValueError(f"{member} in the archive is not a file")
    return f.read()


def _load_cifar10(paths: list[Path], split: str) -> ImageData:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if paths[0].name == "cifar-10-python.tar.gz":
        with tarfile.open(paths[0], "r:gz") as tar:
            blobs = [_tar_bytes(tar, f"cifar-10-batches-py/{n}") for n in names]
    else:
        blobs = [(paths[0].parent / n).read_bytes() for n in names]
    # Unpickling is safe here only because the files passed their checksum.
    batches = [pickle.loads(blob, encoding="bytes") for blob in blobs]
    pixels = np.concatenate([b[b"data"] for b in batches])  # (N, 3072): 1024 red, then green, then blue
    x = torch.from_numpy(pixels.reshape(-1, 3, 32, 32)).float().div_(255)
    y = torch.tensor([label for b in batches for label in b[b"labels"]], dtype=torch.int64)
    return ImageData(x, y, list(CIFAR10_CLASSES), f"CIFAR-10 {split} ({len(y):,} images) from {paths[0]}")


def _decode_jpeg_zip(path: Path) -> dict[str, torch.Tensor]:
    """Every ``<class>/<n>.jpg`` of a zip as uint8 x (N, 3, 32, 32) and y (N,), in a fixed order."""
    from PIL import Image

    with zipfile.ZipFile(path) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".jpg"))
        pixels = np.empty((len(names), 32, 32, 3), np.uint8)
        for i, n in enumerate(progress(names, desc=f"decoding {path.name}")):
            with Image.open(io.BytesIO(zf.read(n))) as image:
                pixels[i] = np.asarray(image.convert("RGB"))
    y = torch.tensor([CIFAR10_CLASSES.index(n.split("/")[0]) for n in names])
    order = _shuffled(len(names))
    return {"x": torch.from_numpy(pixels).permute(0, 3, 1, 2)[order].contiguous(), "y": y[order]}


def _cached(name: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``make()``, saved once as cache_dir()/decoded/``name`` (named after its source's checksum).

    A cached file that does not load (truncated, corrupt) is deleted and made again, with a warning.
    """
    path = cache_dir() / "decoded" / name
    if path.exists():
        try:
            return torch.load(path, weights_only=True, mmap=True)
        except Exception as e:  # torch raises RuntimeError, EOFError, pickle errors...: all mean "rebuild"
            warnings.warn(f"the decoded cache {path} is corrupt ({e}); decoding again", stacklevel=3)
            path.unlink(missing_ok=True)
    value = make()
    try:
        from dlkit.runs import atomic_write  # runs imports dlkit.metrics: not at module level

        atomic_write(path, lambda tmp: torch.save(value, tmp))
    except OSError as e:  # a read-only cache only costs time
        warnings.warn(f"could not cache {name} in {path.parent}: {e}", stacklevel=3)
    return value


def _load_cifar10_jpeg(paths: list[Path], split: str) -> ImageData:
    path = paths[0] if split == "train" else paths[1]
    # Decoding 50,000 JPEGs takes a while: the uint8 tensors are cached under the zip's checksum.
    saved = _cached(f"cifar10_jpeg-{split}-{file_digest(path)[:16]}.pt", lambda: _decode_jpeg_zip(path))
    source = f"CIFAR-10 (JPEG) {split} ({len(saved['y']):,} images) from {path}"
    return ImageData(saved["x"].float().div_(255), saved["y"].clone(), list(CIFAR10_CLASSES), source)


def _load_tiny_shakespeare(paths: list[Path], split: str) -> TextData:
    return TextData(paths[0].read_text(encoding="utf-8"), f"tiny shakespeare from {paths[0]}")


def _read_imdb(path: Path) -> dict[str, dict[str, Any]]:
    """Both splits of an aclImdb tarball or folder: {split: {"texts": [...], "labels": (N,) int64}}."""
    reviews: dict[str, list[tuple[str, int, str]]] = {"train": [], "test": []}  # (file name, label, text)
    if path.is_dir():  # an extracted aclImdb/ folder
        for split, (label, cls) in itertools.product(reviews, enumerate(IMDB_CLASSES)):
            files = sorted((path / split / cls).glob("*.txt"))
            if len(files) < 12_000:  # a folder has no checksum: at least check that it is complete
                raise ValueError(f"{path / split / cls} holds {len(files):,} reviews, not 12,500")
            reviews[split] += [
                (f.name, label, f.read_text(encoding="utf-8", errors="replace")) for f in files
            ]
    else:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                parts = member.name.split("/")  # aclImdb/train/pos/0_9.txt
                if member.isfile() and len(parts) == 4 and parts[1] in reviews and parts[2] in IMDB_CLASSES:
                    text = _tar_bytes(tar, member).decode("utf-8", errors="replace")
                    reviews[parts[1]].append((parts[3], IMDB_CLASSES.index(parts[2]), text))
    result = {}
    for split, items in reviews.items():
        items = sorted(items)  # then a fixed shuffle, as the archive groups reviews by class
        items = [items[i] for i in _shuffled(len(items)).tolist()]
        result[split] = {"texts": [t for _, _, t in items], "labels": torch.tensor([y for _, y, _ in items])}
    return result


def _load_imdb(paths: list[Path], split: str) -> TextClassificationData:
    if paths[0].is_dir():
        reviews = _read_imdb(paths[0])[split]
    else:  # reading the tarball takes seconds: both splits are cached under its checksum
        reviews = _cached(f"imdb-{file_digest(paths[0])[:16]}.pt", lambda: _read_imdb(paths[0]))[split]
    source = f"IMDB Large Movie Review Dataset {split} ({len(reviews['texts']):,} reviews) from {paths[0]}"
    return TextClassificationData(reviews["texts"], reviews["labels"].clone(), list(IMDB_CLASSES), source)


def _ratings_table(text: bytes, separator: str) -> np.ndarray:
    """userId, movieId, rating, timestamp rows as float64 (N, 4); pyarrow when installed (25M rows in
    seconds), else NumPy (minutes for ml-25m; the result is cached)."""
    try:
        import pyarrow.csv as pacsv
    except ImportError:
        lines = text.decode("utf-8").replace(separator, ",")
        return np.loadtxt(io.StringIO(lines), delimiter=",", skiprows=1 if separator == "," else 0)
    if separator != ",":  # ml-1m's "::" is two characters; pyarrow takes one
        text = text.replace(separator.encode(), b",")
    names = None if separator == "," else ["userId", "movieId", "rating", "timestamp"]
    table = pacsv.read_csv(
        io.BytesIO(text), read_options=pacsv.ReadOptions(column_names=names) if names else None
    )
    return np.stack([table.column(i).to_numpy().astype(np.float64) for i in range(4)], axis=1)


def _movielens(ratings: np.ndarray, movies: list[list[str]], source: str) -> RatingsData:
    """RatingsData from (N, 4) ratings and movies rows (movieId, title, genres), in the files' order."""
    item_of = {int(row[0]): i for i, row in enumerate(movies)}
    _, user = np.unique(ratings[:, 0], return_inverse=True)
    lookup = np.full(max(item_of) + 1, -1, dtype=np.int64)
    lookup[list(item_of)] = list(item_of.values())
    return RatingsData(
        user=torch.from_numpy(user.astype(np.int64)),
        item=torch.from_numpy(lookup[ratings[:, 1].astype(np.int64)]),
        rating=torch.from_numpy(ratings[:, 2].astype(np.float32)),
        timestamp=torch.from_numpy(ratings[:, 3].astype(np.int64)),
        titles=[row[1] for row in movies],
        genres=[row[2] for row in movies],
        movie_ids=torch.tensor([int(row[0]) for row in movies], dtype=torch.int64),
        source=source,
    )


def _load_movielens(paths: list[Path], split: str) -> RatingsData:
    if paths[0].suffix == ".zip":
        with zipfile.ZipFile(paths[0]) as zf:
            tables = [zf.read(f"ml-latest-small/{n}") for n in ("ratings.csv", "movies.csv")]
    else:
        tables = [p.read_bytes() for p in paths]
    ratings = _ratings_table(tables[0], ",")
    movies = list(csv.reader(io.StringIO(tables[1].decode("utf-8"))))[1:]  # titles hold commas
    return _movielens(ratings, movies, f"MovieLens latest-small ({len(ratings):,} ratings) from {paths[0]}")


def _load_movielens_large(paths: list[Path], split: str) -> RatingsData:
    """ml-1m (``::``-separated .dat files, Latin-1 titles) or ml-25m (csv files), from the official zip.
    Parsing millions of ratings takes a while: the arrays are cached under the zip's checksum."""
    name = paths[0].stem  # ml-1m or ml-25m

    def parse() -> dict[str, Any]:
        with zipfile.ZipFile(paths[0]) as zf:
            if name == "ml-1m":
                ratings = _ratings_table(zf.read("ml-1m/ratings.dat"), "::")
                text = zf.read("ml-1m/movies.dat").decode("latin-1")
                movies = [line.split("::") for line in text.splitlines() if line]
            else:
                ratings = _ratings_table(zf.read(f"{name}/ratings.csv"), ",")
                movies = list(csv.reader(io.StringIO(zf.read(f"{name}/movies.csv").decode("utf-8"))))[1:]
        return {"ratings": torch.from_numpy(ratings), "movies": movies}

    saved = _cached(f"{name}-{file_digest(paths[0])[:16]}.pt", parse)
    ratings = saved["ratings"].numpy()
    return _movielens(
        ratings, saved["movies"], f"MovieLens {name[3:].upper()} ({len(ratings):,} ratings) from {paths[0]}"
    )


def _load_odds(paths: list[Path], split: str) -> TabularData:
    from scipy.io import loadmat

    mat = loadmat(paths[0])
    x = torch.from_numpy(np.asarray(mat["X"], dtype=np.float32))
    y = torch.from_numpy(np.asarray(mat["y"]).ravel().astype(np.int64))
    return TabularData(
        x, y, f"ODDS {paths[0].stem} ({len(y):,} rows, {int(y.sum()):,} outliers) from {paths[0]}"
    )


def _load_adbench(paths: list[Path], split: str) -> TabularData:
    with np.load(paths[0], allow_pickle=False) as npz:
        x = torch.from_numpy(np.asarray(npz["X"], dtype=np.float32))
        y = torch.from_numpy(np.asarray(npz["y"]).ravel().astype(np.int64))
    name = paths[0].stem.split("_", 1)[1]
    return TabularData(x, y, f"ADBench {name} ({len(y):,} rows, {int(y.sum()):,} anomalies) from {paths[0]}")


# ---------------------------------------------------------------------------------------------------
# The registry, and the checksum of every file it accepts. Where the checksums come from:
# - Fashion-MNIST: the files served now (tensorflow/datasets url_checksums/fashion_mnist.txt; their md5s
#   are those the publisher's README gives), an earlier upload (listed by older downloaders: batchup,
#   Connor Olding's mnists) and Debian's recompressed files (package dataset-fashion-mnist).
# - CIFAR-10: keras.datasets.cifar10's file_hash (publisher's md5 c58f30108f718f92721af3b95e74349a).
#   No sha256 is published for the extracted batches: md5, from torchvision's CIFAR10 list.
# - IMDB, MovieLens, tiny shakespeare: tensorflow/datasets url_checksums/{imdb_reviews,movielens,
#   tiny_shakespeare}.txt. ml-latest-small.zip there is the 2018 release (100,836 ratings); ml-1m.zip
#   and ml-25m.zip too. (ml-32m is not registered: no sha256 of it is published where we could read it.)
# - cifar10_jpeg, the labelled IMDB mirror (24,998 + 24,998 reviews), the 2016 MovieLens csvs (100,004
#   ratings), the ODDS .mat and ADBench .npz anomaly sets: the SHA256SUMS of the course's shared data
#   folder (ADBench's files as its repository serves them; ODDS's as the pyod repository copies them).

CHECKSUMS = """
3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84  fashion_mnist/train-images-idx3-ubyte.gz
08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc  fashion_mnist/train-images-idx3-ubyte.gz
b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7  fashion_mnist/train-images-idx3-ubyte.gz
a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845  fashion_mnist/train-labels-idx1-ubyte.gz
b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc  fashion_mnist/train-labels-idx1-ubyte.gz
0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056  fashion_mnist/train-labels-idx1-ubyte.gz
346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073  fashion_mnist/t10k-images-idx3-ubyte.gz
78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229  fashion_mnist/t10k-images-idx3-ubyte.gz
cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa  fashion_mnist/t10k-images-idx3-ubyte.gz
67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5  fashion_mnist/t10k-labels-idx1-ubyte.gz
42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf  fashion_mnist/t10k-labels-idx1-ubyte.gz
8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05  fashion_mnist/t10k-labels-idx1-ubyte.gz
6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce  cifar10/cifar-10-python.tar.gz
c99cafc152244af753f735de768cd75f  cifar10/cifar-10-batches-py/data_batch_1
d4bba439e000b95fd0a9bffe97cbabec  cifar10/cifar-10-batches-py/data_batch_2
54ebc095f3ab1f0389bbae665268c751  cifar10/cifar-10-batches-py/data_batch_3
634d18415352ddfa80567beed471001a  cifar10/cifar-10-batches-py/data_batch_4
482c414d41f54cd18b22e5b47cb7c3cb  cifar10/cifar-10-batches-py/data_batch_5
40351d587109b95175f43aff81a1287e  cifar10/cifar-10-batches-py/test_batch
65a015e86985e01cdaa5e17069c58eebe45b131fd3b7d3ec9ab5950dbbac8771  cifar10_jpeg/train.zip
bfc67b5e62f689623d7ea94de25f25cdf9ca52fbd9bef7a22b1903d63681ef34  cifar10_jpeg/test.zip
c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe  imdb/aclImdb_v1.tar.gz
d39b22ac556f36807c9208ad92b817f0c18835c9bd4ca1b07494b8bc542e753a  imdb/aclImdb_v1_labeled.tar.gz
86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed  tiny_shakespeare/input.txt
696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436  movielens_small/ml-latest-small.zip
b4239649fbf90ebf405c56c3ae1d929d9e7c86fc1a3a80cbef1c884df593ef73  movielens_small/ml-latest-small/ratings.csv
a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20  movielens_1m/ml-1m.zip
8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa  movielens_25m/ml-25m.zip
43d1736d3c688eb5b7856473c36d86a1c345676cab256c91720c1f6984d263b5  movielens_small/ml-latest-small/movies.csv
5e568b6a73711012c481fa6cc984ab9c68e9a4fa44d6aeb3b43efa381c3f695b  odds_cardio/cardio.mat
f4a229b0e2a6b0c9157ce27fa760bcbac0f948cd690b2f5d51c120e5450f2195  odds_letter/letter.mat
9479e221f236684c09f3e11c7ad124725d34ecd301b9450425e8b113368413a6  odds_mnist/mnist.mat
50bbf414caceb66cfe6f6b1eb7c1ff7c6eb1e6d87173f7bb597ba55cd3dc5493  odds_musk/musk.mat
7bc32ac83b3d583443acea8b1342a54aaa59eaedb9996af405322f473f3c22bc  odds_pendigits/pendigits.mat
6feac3112b9c14e1c3e60afc437f2f3d29dc1000119c9f950c628078778d6aa0  odds_satellite/satellite.mat
b6e396c92354d5dcf5036901e36dc58e2913f2d1a5e138c35a2bedf9c69db899  odds_shuttle/shuttle.mat
5824ec854465f2763b4bfe3da1ae9f25ed5433b5c6e265d42e37da4f82a58679  adbench_donors/11_donors.npz
9d98710091551587f4740cfc851a6b064fff6319a337c2dc77ee6da4bcc2e02c  adbench_http/16_http.npz
a0308ac9712d78321073b1c2dc98dc37665c0f35c1cc33019416fe8f8d7de7ea  adbench_mammography/23_mammography.npz
e738f7c58a8740d2c4aac4c71ff49ce5e1d1aa16f44178135fc9c09df05fad1b  adbench_annthyroid/2_annthyroid.npz
d2569fc9bc12115419e3f5b37d19921e10e6c26e5ad1e61064cfb0fbc402dfdd  adbench_smtp/34_smtp.npz
8de161b3f235b7647bb0b39a836d983ff61d67bf234edac461da2d71e889cb87  adbench_thyroid/38_thyroid.npz
c70b72aa611ec87b20efb400943ef3ce4f8bf7aa58fcef825fbd28cc5cee3cc9  adbench_Wilt/44_Wilt.npz
74dd4d0072d6c6f1aabab63bc102f9633454f32bb936fa9bcfbd38f9f2386bcd  adbench_campaign/5_campaign.npz
"""
_CHECKSUM_LINES = [tuple(line.split()) for line in CHECKSUMS.strip().splitlines()]

_CIFAR10_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
_FASHION_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"  # S3 websites are http-only
_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
_MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
_GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
_ADBENCH_URL = "https://github.com/Minqi824/ADBench/raw/main/adbench/datasets/Classical/"
# The anomaly-detection sets (1 = anomaly): ODDS (Rayana 2016) as .mat, ADBench (Han et al. 2022) as .npz.
ODDS_SETS = ("cardio", "shuttle", "mnist", "satellite", "pendigits", "musk", "letter")
ADBENCH_FILES = {
    "donors": "11_donors.npz", "http": "16_http.npz", "smtp": "34_smtp.npz", "campaign": "5_campaign.npz",
    "mammography": "23_mammography.npz", "annthyroid": "2_annthyroid.npz", "thyroid": "38_thyroid.npz",
    "Wilt": "44_Wilt.npz",
}  # fmt: skip
ANOMALY_SETS = tuple(f"adbench_{n}" for n in ADBENCH_FILES) + tuple(f"odds_{n}" for n in ODDS_SETS)

REGISTRY: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo(
            "digits",
            "scikit-learn digits",
            "https://scikit-learn.org/stable/datasets/toy_dataset.html",
            folders=(),
            forms=(),
            loader=_load_digits,
            bundled=_sklearn_digits,
        ),
        DatasetInfo(
            "fashion_mnist",
            "Fashion-MNIST",
            "https://github.com/zalandoresearch/fashion-mnist",
            folders=("fashion_mnist", "fashion-mnist", "FashionMNIST/raw"),  # the last: torchvision's layout
            forms=(_FASHION_FILES,),
            loader=_load_fashion_mnist,
            urls={f: _FASHION_URL + f for f in _FASHION_FILES},
            system_dirs=("/usr/share/datasets/fashion-mnist",),
            advice="install the Debian package dataset-fashion-mnist (apt install dataset-fashion-mnist)",
        ),
        DatasetInfo(
            "cifar10",
            "CIFAR-10",
            "https://www.cs.toronto.edu/~kriz/cifar.html",
            # "." finds torchvision's layout: root/cifar-10-python.tar.gz and root/cifar-10-batches-py/
            folders=("cifar10", "."),
            forms=(("cifar-10-python.tar.gz",), tuple(f"cifar-10-batches-py/{n}" for n in _CIFAR10_BATCHES)),
            loader=_load_cifar10,
            urls={"cifar-10-python.tar.gz": _CIFAR10_URL},
        ),
        DatasetInfo(
            "cifar10_jpeg",
            "CIFAR-10 (JPEG)",
            "https://www.cs.toronto.edu/~kriz/cifar.html",
            folders=("cifar10_jpeg",),
            forms=(("train.zip", "test.zip"),),
            loader=_load_cifar10_jpeg,
            advice='use load_dataset("cifar10"), which downloads the official CIFAR-10',
        ),
        DatasetInfo(
            "imdb",
            "IMDB Large Movie Review Dataset",
            "https://ai.stanford.edu/~amaas/data/sentiment/",
            folders=("imdb", "."),
            forms=(("aclImdb_v1.tar.gz",), ("aclImdb_v1_labeled.tar.gz",), ("aclImdb/",)),
            loader=_load_imdb,
            urls={"aclImdb_v1.tar.gz": _IMDB_URL},
        ),
        DatasetInfo(
            "tiny_shakespeare",
            "tiny shakespeare",
            "https://github.com/karpathy/char-rnn",
            folders=("tiny_shakespeare", "tinyshakespeare"),
            forms=(("input.txt",),),
            loader=_load_tiny_shakespeare,
            urls={"input.txt": _SHAKESPEARE_URL},
            splits=("train", "all"),
        ),
        DatasetInfo(
            "movielens_small",
            "MovieLens latest-small",
            "https://grouplens.org/datasets/movielens/",
            folders=("movielens", "."),
            forms=(("ml-latest-small.zip",), ("ml-latest-small/ratings.csv", "ml-latest-small/movies.csv")),
            loader=_load_movielens,
            urls={"ml-latest-small.zip": _MOVIELENS_URL},
            splits=("train", "all"),
        ),
        *[
            DatasetInfo(
                f"movielens_{size}",
                f"MovieLens {size.upper()}",
                "https://grouplens.org/datasets/movielens/",
                folders=("movielens", "."),
                forms=((f"ml-{size}.zip",),),
                loader=_load_movielens_large,
                urls={f"ml-{size}.zip": f"{_GROUPLENS}ml-{size}.zip"},
                splits=("train", "all"),
            )
            for size in ("1m", "25m")
        ],
        *[
            DatasetInfo(
                f"odds_{name}",
                f"ODDS {name} (outlier detection)",
                "https://odds.cs.stonybrook.edu/",
                folders=("odds", f"odds_{name}", "."),
                forms=((f"{name}.mat",),),
                loader=_load_odds,
                splits=("all",),
                advice=f"download {name}.mat from the ODDS page (or the pyod repository's copy)",
            )
            for name in ODDS_SETS
        ],
        *[
            DatasetInfo(
                f"adbench_{name}",
                f"ADBench {name} (anomaly detection)",
                "https://github.com/Minqi824/ADBench",
                folders=("adbench", f"adbench_{name}", "."),
                forms=((file,),),
                loader=_load_adbench,
                urls={file: _ADBENCH_URL + file},
                splits=("all",),
            )
            for name, file in ADBENCH_FILES.items()
        ],
    ]
}


# ---------------------------------------------------------------------------------------------------
# Splitting and standardising: what several lessons do to a dataset once it is loaded


def split(data: Any, n: int, *, seed: int | None = None) -> tuple[Any, Any]:
    """(``n`` examples, the rest) of ImageData or TextClassificationData: the first ``n``, or with a
    ``seed`` a random ``n`` (the same ones for the same seed, e.g. a validation split that a resumed
    run must not train on). Both parts keep their order and the source of the whole."""
    if not 0 <= n <= len(data):
        raise ValueError(f"cannot take {n} of {len(data)} examples")
    order = torch.arange(len(data))
    if seed is not None:
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return _take(data, order[:n].sort().values), _take(data, order[n:].sort().values)


def _take(data: Any, idx: torch.Tensor) -> Any:
    if isinstance(data, ImageData):
        return ImageData(data.x[idx], data.y[idx], data.classes, data.source)
    if isinstance(data, TextClassificationData):
        texts = [data.texts[i] for i in idx.tolist()]
        return TextClassificationData(texts, data.labels[idx], data.classes, data.source)
    raise TypeError(f"split takes ImageData or TextClassificationData, not {type(data).__name__}")


class Standardize:
    """``x -> (x - mean) / std`` with the mean and standard deviation of the data it was fitted on.

    Fit it on the training part only (``Standardize.fit(train.x)``) and apply it to every part. Plain
    floats, so it works on any device and dtype, and a class rather than a lambda, so that DataLoader
    worker processes can receive it.
    """

    def __init__(self, mean: float, std: float) -> None:
        if not std > 0:
            raise ValueError(f"std must be positive, got {std}")
        self.mean, self.std = float(mean), float(std)

    @classmethod
    def fit(cls, x: torch.Tensor) -> Standardize:
        """The mean and standard deviation of all of ``x``."""
        return cls(x.float().mean().item(), x.float().std().item())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Back to the original scale, e.g. to show standardised images."""
        return x * self.std + self.mean

    def __repr__(self) -> str:
        return f"Standardize(mean={self.mean:.4g}, std={self.std:.4g})"


# ---------------------------------------------------------------------------------------------------
# Detection scenes: real items pasted on a blank canvas, with exact boxes (computer vision 04 and 05)

FASHION_MNIST_COARSE = ["top", "trouser", "dress", "footwear", "bag"]
# Each Fashion-MNIST class's coarse class: T-shirts, pullovers, coats and shirts look too much alike at
# 20 pixels to tell apart, and so do sandals, sneakers and ankle boots.
FASHION_MNIST_TO_COARSE = [0, 1, 0, 2, 0, 3, 0, 3, 4, 3]


def detection_classes(items: ImageData) -> tuple[list[str], torch.Tensor]:
    """(class names, map from ``items``' labels to them): Fashion-MNIST's coarse classes, else its own."""
    if items.classes == FASHION_MNIST_CLASSES:
        return list(FASHION_MNIST_COARSE), torch.tensor(FASHION_MNIST_TO_COARSE)
    return list(items.classes), torch.arange(len(items.classes))


def detection_scenes(
    items: ImageData,
    num: int,
    *,
    seed: int,
    canvas: int = 96,
    objects: tuple[int, int] = (2, 4),
    sizes: tuple[int, int] = (20, 36),
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """``num`` scenes (num, 1, canvas, canvas) and their targets, one {"boxes": (K, 4) xyxy in pixels,
    "labels": (K,) of :func:`detection_classes`} per scene.

    Each scene pastes ``objects[0]`` to ``objects[1]`` random items of grey images ``items``, each cut to
    its pixels' box (the margins dropped) and rescaled so that its longer side is ``sizes[0]`` to
    ``sizes[1]`` pixels, at random places where it overlaps no other: the boxes are exact. Items too
    large for the canvas to hold ``objects[1]`` of them side by side are an error, not an endless search.
    """
    if objects[1] * sizes[1] ** 2 > canvas**2:
        raise ValueError(
            f"{objects[1]} items of up to {sizes[1]} px do not fit loosely on a {canvas} px canvas"
        )
    import random

    import torch.nn.functional as F

    _, to_class = detection_classes(items)
    rng = random.Random(seed)
    scenes, targets = [], []
    for _ in range(num):
        scene, boxes, kept = torch.zeros(1, canvas, canvas), list[tuple[int, int, int, int]](), list[int]()
        count, tries = rng.randint(*objects), 0
        while len(kept) < count:
            tries += 1
            if tries > 10_000:
                raise ValueError(
                    f"could not place {count} items of up to {sizes[1]} px on a {canvas} px canvas"
                )
            i = rng.randrange(len(items))
            ys, xs = (items.x[i, 0] > 0.05).nonzero().unbind(1)  # the item's own pixels
            x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            scale = rng.randint(*sizes) / max(x2 - x1, y2 - y1)
            w, h = max(1, round((x2 - x1) * scale)), max(1, round((y2 - y1) * scale))
            x0, y0 = rng.randint(0, canvas - w), rng.randint(0, canvas - h)
            if any(x0 < bx2 and bx1 < x0 + w and y0 < by2 and by1 < y0 + h for bx1, by1, bx2, by2 in boxes):
                continue  # it would overlap an item already there: draw another
            item = F.interpolate(
                items.x[i, None, :, y1:y2, x1:x2], size=(h, w), mode="bilinear", antialias=True
            )
            scene[:, y0 : y0 + h, x0 : x0 + w] = item[0].clamp(0, 1)
            boxes.append((x0, y0, x0 + w, y0 + h))
            kept.append(i)
        scenes.append(scene)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": to_class[items.y[kept]]})
    return torch.stack(scenes), targets


# ---------------------------------------------------------------------------------------------------
# Offline stand-ins for quick mode on a machine without the real data (the lesson says when it uses one)

_POSITIVE = "great wonderful superb moving brilliant fun beautiful best loved enjoyable"
_NEGATIVE = "awful boring dull terrible worst waste poor stupid bad mess"
_FILLER = "the film movie plot acting story was and a it this with of i cast ending script"


def synthetic_reviews(
    n: int, seed: int = 0, length: tuple[int, int] = (10, 60), cues: int = 3
) -> TextClassificationData:
    """SYNTHETIC two-class "reviews" for an offline quick run, never a result: ``length[0]`` to
    ``length[1]`` filler words ("the film was ...") with ``cues`` sentiment words of the review's class
    ("great", "awful") put in at random places; classes alternate, so any ``n`` is balanced. A model that
    learns which words carry sentiment separates them; one that learns nothing scores 0.5."""
    import random

    rng, filler = random.Random(seed), _FILLER.split()
    texts, labels = [], [i % 2 for i in range(n)]
    for y in labels:
        words = [rng.choice(filler) for _ in range(rng.randint(*length))]
        for _ in range(cues):
            words.insert(rng.randrange(len(words) + 1), rng.choice((_POSITIVE if y else _NEGATIVE).split()))
        texts.append(" ".join(words))
    source = f"SYNTHETIC reviews ({n:,}): filler words and {cues} sentiment words each, no real text"
    return TextClassificationData(texts, torch.tensor(labels), list(IMDB_CLASSES), source)


# Shakespeare's sonnets 18, 73 and 116 (1609, public domain), two verse lines to a source line: the text
# a character-level language model trains on when no tiny shakespeare is on the machine.
_SONNETS = """\
Shall I compare thee to a summer's day? / Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May, / And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines, / And often is his gold complexion dimm'd;
And every fair from fair sometime declines, / By chance or nature's changing course untrimm'd;
But thy eternal summer shall not fade, / Nor lose possession of that fair thou ow'st;
Nor shall Death brag thou wander'st in his shade, / When in eternal lines to time thou grow'st:
So long as men can breathe or eyes can see, / So long lives this, and this gives life to thee.
That time of year thou mayst in me behold / When yellow leaves, or none, or few, do hang
Upon those boughs which shake against the cold, / Bare ruin'd choirs, where late the sweet birds sang.
In me thou see'st the twilight of such day / As after sunset fadeth in the west,
Which by and by black night doth take away, / Death's second self, that seals up all in rest.
In me thou see'st the glowing of such fire / That on the ashes of his youth doth lie,
As the death-bed whereon it must expire, / Consumed with that which it was nourish'd by.
This thou perceiv'st, which makes thy love more strong, / To love that well which thou must leave ere long.
Let me not to the marriage of true minds / Admit impediments. Love is not love
Which alters when it alteration finds, / Or bends with the remover to remove.
O no! it is an ever-fixed mark / That looks on tempests and is never shaken;
It is the star to every wand'ring bark, / Whose worth's unknown, although his height be taken.
Love's not Time's fool, though rosy lips and cheeks / Within his bending sickle's compass come;
Love alters not with his brief hours and weeks, / But bears it out even to the edge of doom.
If this be error and upon me prov'd, / I never writ, nor no man ever lov'd.
""".replace(" / ", "\n")


def bundled_sonnets() -> TextData:
    """Three Shakespeare sonnets (1,837 characters) that ship with dlkit: an offline stand-in for
    tiny shakespeare in quick mode, so small that a model learns them by heart."""
    return TextData(
        _SONNETS, "three Shakespeare sonnets (18, 73, 116) bundled with dlkit (no tiny shakespeare found)"
    )
