"""`serve` under load and faults, against the real server (uvicorn) on loopback.

    python -m benchmarks.serving                      # 50 participants x 4 submissions, then a SIGKILL run

load:   N participants each send K submissions at once (one thread each submission, N*K in flight),
        every answer's latency kept; then the organiser's view of the database is checked: every
        201 recorded exactly once, nothing extra, and the server still answering.
faults: participants keep submitting while the server is SIGKILLed; it is started again on the same
        workspace: the database passes `PRAGMA integrity_check`, every submission that got a 201 is
        there and scored, no row is left pending, and no upload is left without its row.
Writes results/serving.json.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pandas as pd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """`python -m competition serve NAME` in a subprocess of its own, on a free loopback port."""

    def __init__(self, root: Path, name: str = "digits", *extra: str) -> None:
        self.root, self.name, self.extra = Path(root), name, extra
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.organiser: str | None = None
        self.lines: list[str] = []
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120) -> "LiveServer":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "competition", "--root", str(self.root), "serve", self.name, "--port",
             str(self.port), "--log-level", "warning", *self.extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("serve exited:\n" + "\n".join(self.lines))
            try:
                if httpx.get(self.url + "/api/leaderboard", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"serve did not answer in {timeout_s:.0f} s:\n" + "\n".join(self.lines))

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            if line.startswith("organiser token"):
                self.organiser = line.rsplit(" ", 1)[-1].strip()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def alive(self) -> bool:
        try:
            return httpx.get(self.url + "/api/leaderboard", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False


@contextmanager
def live_server(root: Path, name: str = "digits", *extra: str):
    server = LiveServer(root, name, *extra)
    try:
        yield server.start()
    finally:
        server.stop()


def invite(root: Path, name: str, participant: str) -> str:
    """A participant's token, as `invite` makes it (the same call, without a process start per participant)."""
    from competition.hosting.host import open_host
    from competition.workspace import CompetitionPaths
    return open_host(CompetitionPaths(Path(root) / "data" / name)).invite(participant)


def random_submission(solution: Path, seed: int, right: float = 0.6) -> bytes:
    """A label submission of digits right on about `right` of the rows, different for each seed."""
    frame = pd.read_csv(solution, dtype=str)
    rng = np.random.default_rng(seed)
    labels = frame["Label"].astype(int).to_numpy()
    wrong = rng.random(len(labels)) > right
    labels = np.where(wrong, (labels + rng.integers(1, 10, len(labels))) % 10, labels)
    return ("ImageId,Label\n" + "".join(f"{i},{v}\n" for i, v in zip(frame["ImageId"], labels))).encode()


def post(url: str, token: str, body: bytes, name: str) -> tuple[int, float, dict]:
    """One upload: (status, seconds, JSON answer); status 0 for a connection that failed."""
    start = time.perf_counter()
    try:
        answer = httpx.post(url + "/api/submissions", files={"file": (name, body, "text/csv")},
                            headers={"Authorization": f"Bearer {token}"}, timeout=120)
        return answer.status_code, time.perf_counter() - start, answer.json()
    except (httpx.HTTPError, ValueError) as e:
        return 0, time.perf_counter() - start, {"detail": f"{type(e).__name__}: {e}"}


def all_submissions(server: LiveServer) -> list[dict]:
    answer = httpx.get(server.url + "/api/submissions", headers={"Authorization": f"Bearer {server.organiser}"},
                       timeout=60)
    answer.raise_for_status()
    return answer.json()["submissions"]


def load(server: LiveServer, tokens: dict[str, str], bodies: dict[str, list[bytes]], timeout_s: float = 300) -> dict:
    """Every participant's submissions sent at once; latencies and the exactly-once check."""
    jobs = [(name, k, body) for name, listed in bodies.items() for k, body in enumerate(listed)]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(post, server.url, tokens[name], body, f"{name}-{k}.csv") for name, k, body in jobs]
        answers = [f.result(timeout=timeout_s) for f in futures]
    wall_s = time.perf_counter() - start
    accepted = [a for status, _, a in answers if status == 201]
    recorded = all_submissions(server)
    recorded_ids = [s["id"] for s in recorded]
    accepted_ids = [a["id"] for a in accepted]
    latencies = np.array([seconds for _, seconds, _ in answers])
    statuses: dict[str, int] = {}
    for status, _, _ in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {"participants": len(bodies), "submissions": len(jobs), "statuses": statuses, "wall_s": round(wall_s, 2),
            "throughput_per_s": round(len(jobs) / wall_s, 1),
            "latency_p50_s": round(float(np.percentile(latencies, 50)), 3),
            "latency_p95_s": round(float(np.percentile(latencies, 95)), 3),
            "latency_max_s": round(float(latencies.max()), 3),
            "accepted": len(accepted), "recorded": len(recorded),
            "each_accepted_recorded_once": sorted(accepted_ids) == sorted(recorded_ids)
            and len(set(recorded_ids)) == len(recorded_ids),
            "all_scored": all(s["status"] == "scored" for s in recorded), "server_up": server.alive}


def database_state(root: Path, name: str = "digits") -> dict:
    database = root / "data" / name / "server.sqlite"
    with sqlite3.connect(database) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        rows = db.execute("SELECT id, status, stored FROM submissions").fetchall()
    uploads = {p.name for p in (root / "data" / name / "uploads").iterdir()}
    return {"integrity": integrity, "rows": len(rows), "pending": sum(r[1] == "pending" for r in rows),
            "scored_ids": sorted(r[0] for r in rows if r[1] == "scored"),
            "uploads_without_row": sorted(uploads - {r[2] for r in rows})}


SQL_NOTE = "'; DELETE FROM submissions; --"


def bad_inputs(server: LiveServer, root: Path, name: str = "digits") -> list[dict]:
    """Each bad request against the real server: its status, its reason, and whether anything was
    written (rows and files under uploads/ before and after)."""
    solution = root / "data" / name / "private" / "solution.csv"
    alice, bob = invite(root, name, "bad-input-alice"), invite(root, name, "bad-input-bob")
    good = random_submission(solution, seed=5)
    headers = {"Authorization": f"Bearer {alice}"}
    bobs = post(server.url, bob, good, "bob.csv")[2]["id"]

    def upload(body: bytes, file_name: str = "s.csv", note: str = "") -> httpx.Response:
        return httpx.post(server.url + "/api/submissions", files={"file": (file_name, body, "text/csv")},
                          data={"note": note}, headers=headers, timeout=60)
    cases = {
        "over the size limit (Content-Length)": lambda: upload(b"ImageId,Label\n" + b"1,0\n" * 2_000_000),
        "binary junk": lambda: upload(bytes(range(256)) * 64),
        "not UTF-8": lambda: upload("ImageId,Label\n1,\xe9\n".encode("latin-1")),
        "wrong header": lambda: upload(b"id,label\n" + good.split(b"\n", 1)[1]),
        "path-like file name ../../x.csv": lambda: upload(good, "../../x.csv"),
        "no file field": lambda: httpx.post(server.url + "/api/submissions", data={"note": "x"}, headers=headers),
        "another participant's submission (GET)": lambda: httpx.get(f"{server.url}/api/submissions/{bobs}",
                                                                    headers=headers),
        "another participant's submission (pick)": lambda: httpx.post(
            server.url + "/api/selection", json={"submission_ids": [bobs]}, headers=headers),
        "SQL-looking participant name": lambda: httpx.post(
            server.url + "/api/participants", json={"name": "x'); DROP TABLE submissions; --"},
            headers={"Authorization": f"Bearer {server.organiser}"}),
        "SQL-looking note (stored as text)": lambda: upload(good, note=SQL_NOTE),
        "HTML in a note (escaped)": lambda: upload(good, note="<script>alert(1)</script>"),
    }
    rows = []
    for what, send in cases.items():
        before = database_state(root, name)
        answer = send()
        after = database_state(root, name)
        row = {"case": what, "status": answer.status_code, "reason": answer.json().get("detail", "")[:110]
               if answer.status_code >= 400 else "accepted",
               "rows_added": after["rows"] - before["rows"],
               "files_added": len(list((root / "data" / name / "uploads").iterdir())) - before["rows"]
               - len(before["uploads_without_row"])}
        if what.startswith("HTML"):
            login = httpx.post(server.url + "/login", data={"token": alice}, headers={"Origin": server.url})
            page = httpx.get(server.url + "/me", cookies=login.cookies).text
            row["reason"] = f"page shows it escaped: {'&lt;script&gt;' in page and '<script>' not in page}"
        if what.startswith("SQL-looking note"):
            mine = httpx.get(server.url + "/api/submissions", headers=headers).json()["submissions"]
            row["reason"] = f"note stored verbatim: {mine[-1]['note'] == SQL_NOTE}"
        rows.append(row)
    return rows


def kill_during_uploads(root: Path, participants: int = 20, kill_after: int = 25, name: str = "digits",
                        timeout_s: float = 120) -> dict:
    """SIGKILL the server while participants keep uploading; start it again; check what survived."""
    solution = root / "data" / name / "private" / "solution.csv"
    server = LiveServer(root, name, "--daily-limit", "1000").start()
    tokens = {f"p{i:02d}": invite(root, name, f"p{i:02d}") for i in range(participants)}
    acknowledged, lock, stop = [], threading.Lock(), threading.Event()

    def keep_submitting(who: str, seed: int) -> None:
        n = 0
        while not stop.is_set():
            status, _, answer = post(server.url, tokens[who], random_submission(solution, seed * 1000 + n), f"{n}.csv")
            n += 1
            if status == 201:
                with lock:
                    acknowledged.append(answer["id"])
            elif status == 0:
                return              # the server is gone
    threads = [threading.Thread(target=keep_submitting, args=(who, i)) for i, who in enumerate(tokens)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout_s
    while len(acknowledged) < kill_after and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()
    killed_at = len(acknowledged)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    before = database_state(root, name)
    again = LiveServer(root, name).start()
    try:
        after = database_state(root, name)
        recovered = next((line for line in again.lines if line.startswith("recovered")), "nothing to recover")
        up = again.alive
    finally:
        again.stop()
    return {"acknowledged": len(acknowledged), "acknowledged_at_kill": killed_at, "rows_after_kill": before["rows"],
            "pending_after_kill": before["pending"], "stray_uploads_after_kill": len(before["uploads_without_row"]),
            "integrity_after_restart": after["integrity"], "pending_after_restart": after["pending"],
            "every_acknowledged_scored": set(acknowledged) <= set(after["scored_ids"]),
            "stray_uploads_after_restart": len(after["uploads_without_row"]), "recovered": recovered,
            "server_up_after_restart": up}


def main(argv: list[str] | None = None) -> None:
    from benchmarks.common import add_output_flag, command, print_table, write_result
    from competition.preparing.prepare import prepare

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--per-participant", type=int, default=4)
    parser.add_argument("--kills", type=int, default=3, help="SIGKILL-and-restart cycles on one workspace")
    add_output_flag(parser)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="serving-"))
    prepare("digits", root / "data", log=lambda s: None)
    solution = root / "data" / "digits" / "private" / "solution.csv"
    with live_server(root, "digits", "--daily-limit", str(args.per_participant + 5)) as server:
        names = [f"participant-{i:02d}" for i in range(args.participants)]
        tokens = {name: invite(root, "digits", name) for name in names}
        bodies = {name: [random_submission(solution, i * 100 + k) for k in range(args.per_participant)]
                  for i, name in enumerate(names)}
        loaded = load(server, tokens, bodies)
        rejected = bad_inputs(server, root)
    print("load:", loaded)
    print_table(rejected)
    fault_root = Path(tempfile.mkdtemp(prefix="serving-faults-"))
    prepare("digits", fault_root / "data", log=lambda s: None)
    faults = [kill_during_uploads(fault_root) for _ in range(args.kills)]     # killed and restarted, again and again
    print_table(faults)
    write_result("serving", [loaded], {"faults": faults, "bad_inputs": rejected, "command": command("serving", argv)},
                 args.out)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
