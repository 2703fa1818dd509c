"""Fault injection: corrupt, truncated and wrong-typed inputs at every reader, unwritable places,
a full disk, an interrupted download. Each gets one clear line naming the file and what was
expected, exit status 1, and nothing half-written."""

from __future__ import annotations

import errno
import http.server
import io
import os
import threading
from pathlib import Path

import pytest
import torch

from competition.preparing import sources
from competition.cli import main
from competition.fitting.data import load_public
from competition.errors import DataSourceError
from competition.fitting.members import plan_members, predict_member_views, train_member
from competition.fitting.predict import TTA_VIEWS
from competition.preparing.prepare import SplitOptions
from competition.preparing.prepare import ensure_prepared
from competition.workspace import Workspace
from competition.preparing.sources import RemoteFile, download

from conftest import cli, silent, write_kaggle_folder
from competition.prepared import is_prepared


def _kaggle(tmp_path: Path) -> Path:
    return write_kaggle_folder(tmp_path / "kaggle", n_train=40, n_test=10)


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


# (name, how to break the input, CLI arguments, what the one error line must say)
CASES = [
    ("train.csv truncated mid-row",
     lambda tmp: _truncate(_kaggle(tmp) / "train.csv", 0.73), ["prepare", "--data", "{tmp}/kaggle"],
     "train.csv"),
    ("train.csv with a word in a pixel cell",
     lambda tmp: _word_in_a_cell(_kaggle(tmp) / "train.csv"), ["prepare", "--data", "{tmp}/kaggle"],
     "train.csv: row 3, column 'pixel0'"),
    ("test.csv missing",
     lambda tmp: (_kaggle(tmp) / "test.csv").unlink(), ["prepare", "--data", "{tmp}/kaggle"], "no test.csv"),
    ("solution.csv with the wrong header",
     lambda tmp: (_kaggle(tmp) / "solution.csv").write_text("Id,Answer\n1,3\n"),
     ["prepare", "--data", "{tmp}/kaggle"], "header must start with ImageId,Label"),
    ("solution.csv missing rows",
     lambda tmp: _truncate(_kaggle(tmp) / "solution.csv", 0.5), ["prepare", "--data", "{tmp}/kaggle"],
     "ImageId must be exactly 1..10"),
    ("IDX file truncated",
     lambda tmp: _broken_idx(tmp), ["prepare", "mnist", "--offline"], "train-images-idx3-ubyte"),
    ("notMNIST tarball that is not a tarball",
     lambda tmp: _write(tmp / "ws/data/notmnist/raw/notMNIST_small.tar.gz", b"\x1f\x8b not really gzip"),
     ["prepare", "notmnist", "--offline"], "notMNIST_small.tar.gz"),
    ("config TOML that does not parse",
     lambda tmp: _write(tmp / "bad.toml", b"epochs = [1,\n"), ["run", "--config", "{tmp}/bad.toml"],
     "bad.toml: cannot read the config file"),
    ("config JSON with a wrong type",
     lambda tmp: _write(tmp / "bad.json", b'{"lr": "fast"}'), ["run", "--config", "{tmp}/bad.json"],
     "lr must be a number, got 'fast'"),
    ("config file that does not exist",
     lambda tmp: None, ["run", "--config", "{tmp}/nowhere.toml"], "nowhere.toml: cannot read the config file"),
    ("workspace under a file, not a folder",
     lambda tmp: _write(tmp / "ws", b"a file"), ["prepare", "digits"], "cannot make the folder here"),
    ("submission that is not UTF-8",
     lambda tmp: _write(tmp / "sub.csv", b"\xff\xfe\x00"), ["score", "{tmp}/sub.csv", "--competition", "digits"],
     "not UTF-8"),
    ("member spec that is not JSON",
     lambda tmp: _write(tmp / "spec.json", b"{"), ["train-member", "{tmp}/spec.json"], "spec.json: not a member spec"),
    ("resume of a run that does not exist",
     lambda tmp: None, ["run", "--resume", "nosuch"], "no run 'nosuch' to resume"),
    ("report of a run that does not exist",
     lambda tmp: None, ["report", "nosuch"], "no finished run 'nosuch'"),
]


def _word_in_a_cell(path: Path) -> None:
    lines = path.read_text().splitlines()
    cells = lines[2].split(",")
    cells[1] = "abc"                       # row 3 of the file, column pixel0
    lines[2] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _broken_idx(tmp: Path) -> None:
    from conftest import write_idx_set
    files = write_idx_set(tmp / "ws" / "data" / "mnist" / "raw", gz=False)
    _truncate(files["train-images-idx3-ubyte"], 0.5)


@pytest.mark.parametrize("name, breakage, argv, message", CASES, ids=[c[0] for c in CASES])
def test_a_broken_input_gets_one_line_naming_it_and_exit_1(tmp_path, capsys, name, breakage, argv, message):
    breakage(tmp_path)
    workspace_root = tmp_path / "ws"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "data" not in p.parts)
    code = main(["--root", str(workspace_root), *[a.format(tmp=tmp_path) for a in argv]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1, name
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "data" not in p.parts)
    assert [p for p in after if p not in before and p.name not in ("ws",)] == []        # nothing half-written
    if (workspace_root / "data").is_dir():          # a competition is there whole or not at all
        assert not list((workspace_root / "data").rglob(".prepare-*"))
        for public in (workspace_root / "data").glob("*/public"):
            assert (public / "competition.json").is_file() == (public / "train.csv").is_file()


def test_a_full_disk_keeps_the_previous_ledger_and_leaderboard_and_says_so(workspace, capsys, monkeypatch):
    assert cli(workspace, "prepare", "digits") == 0
    sample = workspace.competition("digits").public / "sample_submission.csv"
    assert cli(workspace, "score", str(sample), "--competition", "digits") == 0
    before = workspace.leaderboard.read_bytes()
    ledger = workspace.competition("digits").root / "scored.jsonl"
    ledger_before = ledger.read_bytes()
    capsys.readouterr()

    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real_fdopen = sources.os.fdopen
    monkeypatch.setattr(sources.os, "fdopen", lambda fd, *a, **k: (os.close(fd), FullDisk())[1])
    assert cli(workspace, "score", str(sample), "--competition", "digits", "--run-id", "second") == 1
    monkeypatch.setattr(sources.os, "fdopen", real_fdopen)
    err = capsys.readouterr().err.strip()
    assert "scored.jsonl: cannot write (No space left on device); the previous file is unchanged" in err
    assert workspace.leaderboard.read_bytes() == before and ledger.read_bytes() == ledger_before
    assert not list(workspace.root.rglob("*.tmp"))


def test_a_corrupt_image_array_is_prepared_again_not_trusted(tmp_path):
    workspace = Workspace(tmp_path)
    paths = ensure_prepared(workspace, "digits", None, SplitOptions(), silent)
    first = load_public(paths.public).train_images.clone()     # a copy: the damage truncates the mapped file
    for damage in (lambda: _truncate(paths.train_images, 0.3), lambda: paths.test_images.write_bytes(b"\x93NUMPY junk"),
                   lambda: paths.labels.write_bytes(b"PK\x03\x04 garbage")):
        damage()
        assert not is_prepared(paths)
        ensure_prepared(workspace, "digits", None, SplitOptions(), silent)
        again = load_public(paths.public)
        assert torch.equal(first, again.train_images)


@pytest.mark.slow
def test_a_corrupt_checkpoint_is_reported_with_its_path(tmp_path, tiny_config, resolve_for, prepared_digits):
    paths = prepared_digits
    [spec, _] = plan_members(resolve_for(tiny_config.replace(epochs=1), paths), 0, paths.public, tmp_path / "run")
    train_member(spec)
    _truncate(Path(spec.out_dir) / "best.ckpt", 0.4)
    with pytest.raises(DataSourceError, match=r"best.ckpt: not a readable checkpoint .*delete the member's folder"):
        predict_member_views(Path(spec.out_dir), TTA_VIEWS)


class _ShortHandler(http.server.BaseHTTPRequestHandler):
    """Promises 1,000 bytes and hangs up after 10: a download cut off midway."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")

    def log_message(self, *args: object) -> None:
        pass


def test_an_interrupted_download_leaves_nothing_and_names_the_file(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ShortHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        remote = RemoteFile("images.gz", (f"http://127.0.0.1:{server.server_address[1]}/",), size=1000)
        with pytest.raises(DataSourceError, match=r"could not download images.gz:\n.*size 10 bytes, expected 1000"):
            download(remote, tmp_path / "raw", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert list((tmp_path / "raw").iterdir()) == []
