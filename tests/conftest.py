"""Shared fixtures: small data made by the tests, a temporary workspace, a loopback HTTP server, the
harness's command in a child process."""

from __future__ import annotations

import functools
import gzip
import http.server
import itertools
import multiprocessing
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from competition.preparing import competitions

from competition.fitting import policy
from competition.cli import main
from competition.config import RunConfig
from competition.preparing.prepare import prepare
from competition.workspace import CompetitionPaths
from competition.workspace import Workspace
from competition.prepared import read_prepared


def silent(line: str) -> None:
    """A `log` that prints nothing."""


def cli(workspace: Workspace, *args: str) -> int:
    """`python -m competition --root WORKSPACE ARGS` in this process; its exit status."""
    return main(["--root", str(workspace.root), *args])


def make_images(n: int, side: int = 28, num_classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distinct, learnable images: class k lights up a k-dependent bar, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(n, side, side), dtype=np.uint8)
    for i, k in enumerate(labels):
        row = (k * side) // num_classes
        images[i, row: row + max(1, side // num_classes), :] = 255
    return images, labels.astype(np.int64)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, n_train: int = 60, n_test: int = 20, gz: bool = True) -> dict[str, Path]:
    """The four MNIST-style IDX files, made from `make_images`."""
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = make_images(n_train, seed=1)
    test_x, test_y = make_images(n_test, seed=2)
    arrays = {"train-images-idx3-ubyte": train_x, "train-labels-idx1-ubyte": train_y,
              "t10k-images-idx3-ubyte": test_x, "t10k-labels-idx1-ubyte": test_y}
    paths = {}
    for name, array in arrays.items():
        data = idx_bytes(array)
        path = folder / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
        paths[name] = path
    return paths


def write_kaggle_folder(folder: Path, n_train: int = 80, n_test: int = 30, side: int = 8,
                        with_solution: bool = True) -> Path:
    """A Digit-Recognizer-form folder: train.csv, test.csv and (optionally) solution.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = make_images(n_train, side, seed=3)
    test_x, test_y = make_images(n_test, side, seed=4)
    columns = [f"pixel{i}" for i in range(side * side)]
    train = pd.DataFrame(train_x.reshape(n_train, -1), columns=columns)
    train.insert(0, "label", train_y)
    train.to_csv(folder / "train.csv", index=False)
    pd.DataFrame(test_x.reshape(n_test, -1), columns=columns).to_csv(folder / "test.csv", index=False)
    if with_solution:
        pd.DataFrame({"ImageId": np.arange(1, n_test + 1), "Label": test_y}).to_csv(folder / "solution.csv",
                                                                                   index=False)
    return folder


def write_png_folders(root: Path, per_class: int = 3, corrupt: int = 1, wrong_size: int = 1) -> np.ndarray:
    """notMNIST's form: one folder of 28x28 PNGs per letter, plus unreadable and wrong-sized files."""
    images, _ = make_images(per_class * 10, seed=5)
    for k, letter in enumerate(competitions.LETTERS):
        (root / letter).mkdir(parents=True)
        for j in range(per_class):
            Image.fromarray(images[k * per_class + j]).save(root / letter / f"{j}.png")
    for j in range(corrupt):
        (root / "A" / f"corrupt{j}.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    for j in range(wrong_size):
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "B" / f"small{j}.png")
    return images


FRUITS = ("apple", "banana", "cherry")


def make_colour_images(n: int, height: int = 12, width: int = 16, channels: int = 3, num_classes: int = 3,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, C) learnable images: class k is stripes in k-dependent direction (vertical, horizontal,
    checks), in a random colour over noise, so grey and colour, square and not, all carry the class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:height, 0:width]
    patterns = [(xx // 2) % 2, (yy // 2) % 2, ((xx // 2) + (yy // 2)) % 2]
    images = rng.integers(0, 60, size=(n, height, width, channels)).astype(np.int64)
    for i, k in enumerate(labels):
        tint = rng.integers(120, 256, size=channels)
        images[i] += patterns[k % len(patterns)][..., None] * tint
    return images.clip(0, 255).astype(np.uint8), labels.astype(np.int64)


def _save_image(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path, quality=95)


def write_image_folder(folder: Path, form: str = "image-folder", n_train: int = 90, n_test: int = 30,
                       height: int = 12, width: int = 16, channels: int = 3, suffix: str = ".png",
                       string_labels: bool = True, with_solution: bool = True, num_classes: int = 3) -> Path:
    """A Kaggle image competition folder, made here.

    form "image-folder": train/<id><suffix>, trainLabels.csv (id,label), test/<id><suffix>,
    sampleSubmission.csv (id,label) as Kaggle's CIFAR-10; "class-folders": train/<class>/*, test/*.
    solution.csv (id,label,Usage) holds the answers."""
    train_x, train_y = make_colour_images(n_train, height, width, channels, num_classes, seed=6)
    test_x, test_y = make_colour_images(n_test, height, width, channels, num_classes, seed=7)
    if not string_labels:
        names = np.array([str(k) for k in range(num_classes)])
    else:
        names = np.array(FRUITS if num_classes == 3 else [f"kind-{k:03d}" for k in range(num_classes)])
    (folder / "test").mkdir(parents=True)
    test_ids = np.arange(n_train + 1, n_train + n_test + 1).astype(str)     # Kaggle's test ids go on from train's
    for i, image in zip(test_ids, test_x):
        _save_image(image, folder / "test" / f"{i}{suffix}")
    if form == "image-folder":
        (folder / "train").mkdir()
        for i, image in enumerate(train_x, start=1):
            _save_image(image, folder / "train" / f"{i}{suffix}")
        pd.DataFrame({"id": np.arange(1, n_train + 1), "label": names[train_y]}).to_csv(
            folder / "trainLabels.csv", index=False)
        pd.DataFrame({"id": test_ids, "label": names[0]}).to_csv(folder / "sampleSubmission.csv", index=False)
    else:
        for i, (image, k) in enumerate(zip(train_x, train_y)):
            (folder / "train" / names[k]).mkdir(parents=True, exist_ok=True)
            _save_image(image, folder / "train" / names[k] / f"img{i}{suffix}")
    if with_solution:
        usage = np.where(np.arange(n_test) % 3 == 0, "Public", "Private")
        pd.DataFrame({"id": test_ids, "label": names[test_y], "Usage": usage}).to_csv(
            folder / "solution.csv", index=False)
    return folder


def write_cifar_tarball(path: Path, per_batch: int = 12, n_test: int = 20) -> np.ndarray:
    """cifar-10-python.tar.gz's form, small: five data batches and a test batch, each a pickled dict
    of (N, 3072) uint8 rows (R, G, B planes) and labels. Returns the first training image (H, W, C)."""
    import io
    import pickle
    import tarfile

    batches = {f"data_batch_{i}": per_batch for i in range(1, 6)} | {"test_batch": n_test}
    buffer = io.BytesIO()
    first = None
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for seed, (name, n) in enumerate(batches.items()):
            images, labels = make_colour_images(n, 32, 32, 3, num_classes=10, seed=seed)
            first = images[0] if first is None else first
            rows = images.transpose(0, 3, 1, 2).reshape(n, -1)
            data = pickle.dumps({b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": rows})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return first


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws")


@pytest.fixture
def tiny_config() -> RunConfig:
    """Seconds, not minutes: 2 folds x 1 seed of a small model for a few epochs on `digits`, with a
    confidence rule loose enough that the pseudo-label round always has rows."""
    return RunConfig(competition="digits", models=("fastnet",), folds=2, seeds=1, epochs=3, pseudo_rounds=1,
                     time_limit="none", batch_size=64, patience=5, pseudo_threshold=0.3)


@pytest.fixture(scope="session")
def backbone_weights(tmp_path_factory) -> Path:
    """An ImageNet-shaped (1,000-class) state dict of timm's ~100k-parameter `test_efficientnet` in
    timm's key names, as a converted checkpoint is; saved as `<timm-name>.pth`, so its folder is a
    weights folder too."""
    import timm
    import torch
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "test_efficientnet.pth"
    torch.save(timm.create_model("test_efficientnet", num_classes=1000).state_dict(), path)
    return path


@pytest.fixture
def restore_threads():
    """torch's CPU thread count as it was before the test (members set it)."""
    import torch
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def resolve_for():
    """`cfg` made concrete for a prepared competition, as `fit` makes it before planning members:
    what a test that plans or trains members itself must pass them."""
    def resolve_for(cfg: RunConfig, paths) -> RunConfig:
        info = read_prepared(paths.public)
        return policy.resolve(cfg, channels=info.channels, labelled=info.train_size, stored_size=info.height,
                              hflip=info.hflip, multi_label=info.multi_label)
    return resolve_for


def resolved(cfg: RunConfig, *, channels: int = 1, labelled: int = 4000, stored_size: int = 28,
             hflip: bool = False) -> RunConfig:
    """`cfg` made concrete (policy.resolve) for a grey competition of this shape: what a unit test of
    the planner or of a module passes, since those read no `auto`."""
    return policy.resolve(cfg, channels=channels, labelled=labelled, stored_size=stored_size, hflip=hflip)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server(tmp_path: Path):
    """Serve a temporary folder on 127.0.0.1; yields (folder, base_url). Stops by itself."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # shutdown() waits out serve_forever's poll: 0.5 s a test at its default
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def prepared_digits(tmp_path_factory) -> CompetitionPaths:
    """`digits` prepared once a session (real data shipped with scikit-learn); copy it before writing."""
    return prepare("digits", tmp_path_factory.mktemp("prepared") / "data", log=silent)


@pytest.fixture
def digits_workspace(tmp_path: Path, prepared_digits: CompetitionPaths) -> Workspace:
    """A workspace of its own holding a prepared `digits` (a copy), for tests that write beside it."""
    import shutil
    workspace = Workspace(tmp_path / "ws")
    shutil.copytree(prepared_digits.root, workspace.competition("digits").root)
    return workspace


# What `python -m competition run` imports before it trains: the fork server imports it once
HARNESS_MODULES = ("competition.cli", "competition.pipeline", "competition.fitting.fit", "competition.fitting.train")


def _harness_main(args: list[str], output: str, cwd: str, before: Callable[[], None] | None) -> None:
    """The child: `python -m competition ARGS` with stdout and stderr in `output`."""
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.chdir(cwd)
    # SIGINT as a terminal's foreground job has it: a suite started as a background job of a shell
    # without job control (`bash .ci/run &`) would otherwise pass its ignored SIGINT on, and a run
    # that ignores SIGINT rightly does not stop for it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if before is not None:
        before()
    sys.exit(main(args))


class HarnessProcess:
    """A running `python -m competition ...`, with the part of `subprocess.Popen` the tests use."""

    def __init__(self, process: multiprocessing.process.BaseProcess, output: Path) -> None:
        self._process = process
        self._output = output

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status; minus the signal's number for a process a signal ended; None while it runs."""
        return self._process.exitcode

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise TimeoutError(f"the harness process {self.pid} still runs after {timeout} s")
        return self._process.exitcode

    def communicate(self, timeout: float | None = None) -> tuple[str, None]:
        """Wait for the end; its printed output (stdout and stderr together), as `Popen` gives it."""
        self.wait(timeout)
        return self._output.read_text(), None


@pytest.fixture(scope="session")
def start_harness(tmp_path_factory) -> Callable[..., HarnessProcess]:
    """`start_harness(*args, before=None)` runs `python -m competition *args` in a child process that
    SIGKILL, SIGINT and SIGTERM reach as they reach the real command. The child is forked from a
    server that imported the harness once: a fresh interpreter spends ~5 s importing torch and
    Lightning (more on slower machines), most of what a kill test would take. `before`, a
    module-level function, runs in the child first (to break something on purpose)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(HARNESS_MODULES))
    outputs = tmp_path_factory.mktemp("harness-output")
    counter = itertools.count()
    cwd = str(Path(__file__).resolve().parents[1])

    def start(*args: str, before: Callable[[], None] | None = None) -> HarnessProcess:
        output = outputs / f"{next(counter)}.txt"
        process = context.Process(target=_harness_main, args=([str(a) for a in args], str(output), cwd, before))
        process.start()
        return HarnessProcess(process, output)
    return start
