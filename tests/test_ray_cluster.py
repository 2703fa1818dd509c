"""`--cluster`: a run joins a Ray cluster started separately with `ray start`.

A module of its own: the local Ray of test_executors.py is shut down before this one starts, so
the two do not share the 2 cores (with it still up this test took twice as long)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[1]
STARTED = "block forever"      # what `ray start --block` prints once the head node is up


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_head(port: int, env: dict[str, str], temp_dir: Path, log: Path, timeout: float = 120) -> subprocess.Popen:
    """A Ray head node that lives as long as the returned process: `--block` keeps `ray start` in
    the foreground and it takes its node's processes down when terminated (`ray stop` would stop
    every Ray on the machine, a developer's own cluster included). Its files, the address a later
    `ray.init()` would join among them, stay in `temp_dir`."""
    with log.open("w") as out:
        head = subprocess.Popen(["ray", "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                                 "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
                                 "--disable-usage-stats", "--temp-dir", str(temp_dir)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout
    while STARTED not in log.read_text():
        if head.poll() is not None or time.monotonic() > deadline:
            head.kill()
            raise AssertionError("ray start did not start a head node:\n" + log.read_text()[-3000:])
        time.sleep(0.2)
    return head


@pytest.mark.slow
def test_cluster_flag_joins_a_ray_started_separately_with_the_token_a_local_ray_left(tmp_path):
    """Since Ray 2.60 a local Ray (a `--workers` run) leaves ~/.ray/auth_token and `ray start` then
    turns token authentication on: the run must still join. HOME is the test's own, so the token
    is too (and nothing is written to the real home)."""
    port = _free_port()
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_ADDRESS": "", "HOME": str(home)}
    env.pop("RAY_AUTH_MODE", None)
    # Ray's socket paths must stay under 108 bytes: a short folder, not the test's own
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-"))
    head = _start_head(port, env, temp_dir, tmp_path / "ray-start.log")
    try:
        assert "Token authentication is enabled" in (tmp_path / "ray-start.log").read_text()
        out = subprocess.run([sys.executable, "-m", "competition", "--root", str(tmp_path / "ws"), "run",
                              "--time-limit", "none", "--competition", "digits", "--epochs", "1", "--folds", "2",
                              "--pseudo-rounds", "0", "--cluster", f"127.0.0.1:{port}"],
                             cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    finally:
        head.terminate()
        head.wait(timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"ray (cluster 127.0.0.1:{port}" in out.stdout and "out-of-fold accuracy" in out.stdout
    assert (tmp_path / "ws" / "submission.csv").is_file()
