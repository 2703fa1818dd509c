"""Readers and downloaders for raw image data: IDX files, PNG-folder tarballs, CIFAR batches, Kaggle CSVs.

Every reader returns images as uint8 arrays of shape (N, H, W) (grey) or (N, H, W, C) and labels
as int64 (N,).
Errors name the file (and the row or field) at fault.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import http.client
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataSourceError, WriteError
from ..workspace import atomic_write_text


# ---------------------------------------------------------------- IDX (MNIST family)

_IDX_DTYPES = {0x08: np.uint8}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): uint8 images (N, H, W) or labels (N,)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataSourceError(f"{path}: cannot read ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataSourceError(f"{path}: not an IDX file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code not in _IDX_DTYPES or ndim not in (1, 3):
        raise DataSourceError(f"{path}: unsupported IDX type 0x{dtype_code:02x} with {ndim} dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataSourceError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataSourceError(
            f"{path}: truncated or padded IDX file: header says {shape} = {expected} bytes of data, "
            f"file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataSourceError(
            f"{images_path} / {labels_path}: {images.shape} images do not match {labels.shape} labels")
    return images, labels.astype(np.int64)


# ---------------------------------------------------------------- downloads


@dataclass(frozen=True)
class RemoteFile:
    """A file with its mirrors and an integrity check (md5 of the bytes, or the exact size)."""
    name: str
    mirrors: tuple[str, ...]                # base URLs, tried in order
    md5: str | None = None
    size: int | None = None


def verify(path: Path, remote: RemoteFile) -> None:
    """Raise DataSourceError if `path` does not match the remote file's checksum or size."""
    if remote.size is not None and path.stat().st_size != remote.size:
        raise DataSourceError(f"{path}: size {path.stat().st_size} bytes, expected {remote.size}")
    if remote.md5 is not None:
        digest = hashlib.md5(path.read_bytes()).hexdigest()
        if digest != remote.md5:
            raise DataSourceError(f"{path}: md5 {digest} does not match the expected {remote.md5}")


def download(remote: RemoteFile, dest_dir: Path, timeout: float = 60.0) -> Path:
    """Fetch `remote` into dest_dir from the first mirror that serves a verified copy.

    The file is written under a temporary name and renamed only once verified, so a
    failed or corrupt download leaves nothing behind.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / remote.name
    failures = []
    for base in remote.mirrors:
        url = base.rstrip("/") + "/" + remote.name
        fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{remote.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                copy_with_progress(response, out, int(response.headers.get("Content-Length") or 0), remote.name)
            verify(tmp, remote)
            os.replace(tmp, dest)
            return dest
        except (urllib.error.URLError, http.client.HTTPException, OSError, DataSourceError) as e:
            failures.append(f"{url}: {e!r}" if isinstance(e, http.client.HTTPException) else f"{url}: {e}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataSourceError(f"could not download {remote.name}:\n  " + "\n  ".join(failures))


def copy_with_progress(source, out, size: int, name: str, chunk: int = 1 << 20) -> None:
    """Copy a download in chunks, with a progress bar on a terminal (bytes, rate, time left)."""
    from tqdm import tqdm
    with tqdm(total=size or None, unit="B", unit_scale=True, unit_divisor=1024, desc=f"downloading {name}",
              disable=not sys.stderr.isatty(), leave=False) as bar:
        while block := source.read(chunk):
            out.write(block)
            bar.update(len(block))


def find_or_download(remote: RemoteFile, search_dirs: list[Path], download_dir: Path,
                     allow_download: bool = True) -> Path:
    """A local copy of `remote` from the first directory holding it, else a verified download."""
    for folder in search_dirs:
        for candidate in (folder / remote.name, folder / remote.name.removesuffix(".gz")):
            if candidate.is_file():
                return candidate
    if not allow_download:
        places = ", ".join(str(d) for d in search_dirs)
        raise DataSourceError(f"{remote.name} not found in {places} and downloads are off")
    return download(remote, download_dir)


# ---------------------------------------------------------------- PNG folders (notMNIST)


@dataclass
class FolderReport:
    """What reading a folder-per-class image set found, for `prepare` to print."""
    per_class: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)


def read_png_folders(root: Path, classes: tuple[str, ...], image_size: int = 28
                     ) -> tuple[np.ndarray, np.ndarray, FolderReport]:
    """Read root/<class>/*.png; unreadable or wrongly sized images are skipped and listed."""
    from PIL import Image, UnidentifiedImageError

    report = FolderReport()
    images, labels = [], []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            raise DataSourceError(f"{root}: missing class folder {name!r}")
        count = 0
        for png in sorted(folder.iterdir()):
            try:
                with Image.open(png) as img:
                    pixels = np.asarray(img.convert("L"), dtype=np.uint8)
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
                report.unreadable.append(str(png.relative_to(root)))
                continue
            if pixels.shape != (image_size, image_size):
                report.unreadable.append(str(png.relative_to(root)))
                continue
            images.append(pixels)
            labels.append(label)
            count += 1
        report.per_class[name] = count
    if not images:
        raise DataSourceError(f"{root}: no readable images")
    return np.stack(images), np.asarray(labels, dtype=np.int64), report


def extract_tarball(tarball: Path, dest_dir: Path) -> Path:
    """Extract a .tar.gz once (into dest_dir) and return the folder it holds."""
    top = tarball.name.removesuffix(".tar.gz")
    target = dest_dir / top
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f".{top}."))
    try:
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, filter="data")
        extracted = tmp / top if (tmp / top).is_dir() else tmp
        os.replace(extracted, target)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataSourceError(f"{tarball}: cannot extract ({e})") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# ---------------------------------------------------------------- CIFAR-10 python batches


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR's batches are pickles of numpy arrays and lists: allow only what they need, so a
    tampered local file cannot run code."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def read_cifar_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch: images (N, 32, 32, 3) uint8 from its (N, 3072) rows of R, G, B planes; labels."""
    try:
        batch = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
        rows = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as e:
        raise DataSourceError(f"{where}: not a CIFAR-10 batch ({e})") from e
    if rows.ndim != 2 or rows.shape[1] != 3 * 32 * 32 or len(rows) != len(labels):
        raise DataSourceError(f"{where}: data {rows.shape} and {labels.shape} labels are not a CIFAR-10 batch")
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def read_cifar_tarball(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels) from cifar-10-python.tar.gz,
    read in place: data_batch_1..5 are the training set, test_batch the official test set."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {}
    try:
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                base = member.name.rsplit("/", 1)[-1]
                if base in names and member.isfile():
                    batches[base] = read_cifar_batch(tar.extractfile(member).read(), f"{path}:{member.name}")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataSourceError(f"{path}: cannot read the tarball ({e})") from e
    missing = [n for n in names if n not in batches]
    if missing:
        raise DataSourceError(f"{path}: no {', '.join(missing)} in the tarball")
    train = [batches[n] for n in names[:-1]]
    return (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train]), *batches["test_batch"])


# ---------------------------------------------------------------- Kaggle CSVs


def read_pixel_csv(path: Path, with_labels: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a Kaggle Digit-Recognizer CSV: `label,pixel0..` (train) or `pixel0..` (test).

    Returns images (N, S, S) uint8 and labels (N,) or None. Rows are numbered as in the
    file (the header is row 1) in error messages.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path)      # the C parser; integer columns come back as int64
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataSourceError(f"{path}: cannot parse CSV ({e})") from e
    columns = list(frame.columns)
    pixel_columns = columns[1:] if with_labels else columns
    if with_labels and (not columns or columns[0] != "label"):
        raise DataSourceError(f"{path}: first column must be 'label', found {columns[:1]}")
    side = int(round(len(pixel_columns) ** 0.5))
    expected = [f"pixel{i}" for i in range(side * side)]
    if pixel_columns != expected or side == 0:
        wrong = next((i for i, (a, b) in enumerate(zip(pixel_columns, expected)) if a != b), len(expected))
        found = pixel_columns[wrong] if wrong < len(pixel_columns) else "missing"
        raise DataSourceError(f"{path}: pixel columns must be pixel0..pixelN-1 for a square image; "
                              f"column {wrong + (2 if with_labels else 1)} is {found!r}")
    if len(frame) == 0:
        raise DataSourceError(f"{path}: no rows")
    _check_integer_cells(frame, path)
    values = frame.to_numpy(dtype=np.int64)
    pixels = values[:, 1:] if with_labels else values
    bad = np.argwhere((pixels < 0) | (pixels > 255))
    if len(bad):
        row, col = bad[0]
        raise DataSourceError(f"{path}: row {row + 2}, column {pixel_columns[col]!r}: "
                              f"pixel {pixels[row, col]} outside 0..255")
    images = pixels.astype(np.uint8).reshape(-1, side, side)
    labels = values[:, 0].astype(np.int64) if with_labels else None
    return images, labels


def _check_integer_cells(frame: pd.DataFrame, path: Path) -> None:
    """Name the first cell (row as numbered in the file, header = 1) that is not an integer."""
    for col in np.flatnonzero([not pd.api.types.is_integer_dtype(t) for t in frame.dtypes]):
        cells = frame.iloc[:, col]
        numeric = pd.to_numeric(cells, errors="coerce")
        bad = numeric.isna().to_numpy() | (numeric.to_numpy() % 1 != 0)
        row = int(np.flatnonzero(bad)[0])
        raise DataSourceError(f"{path}: row {row + 2}, column {frame.columns[col]!r}: "
                              f"{'' if pd.isna(cells.iat[row]) else cells.iat[row]!r} is not an integer")


_CELL = np.array([str(i) for i in range(256)], dtype=object)


def write_pixel_csv(path: Path, images: np.ndarray, labels: np.ndarray | None) -> None:
    """Write images (N, S, S) uint8 in Kaggle form; same input, byte-identical output."""
    n, side = len(images), images.shape[1]
    header = (["label"] if labels is not None else []) + [f"pixel{i}" for i in range(side * side)]
    flat = images.reshape(n, -1)
    buffer = io.StringIO()
    buffer.write(",".join(header) + "\n")
    for i in range(n):
        prefix = f"{int(labels[i])}," if labels is not None else ""
        buffer.write(prefix + ",".join(_CELL[flat[i]]) + "\n")
    atomic_write_text(path, buffer.getvalue())


