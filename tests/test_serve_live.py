"""`serve` as its users run it: the real server (uvicorn) in its own process on a free loopback port,
the `invite` and `submit` commands, concurrent participants, and a SIGKILL in the middle of uploads."""

from __future__ import annotations

import select
import socket
import subprocess
import sys

import pytest

pytest.importorskip("uvicorn", reason="the serve extra: pip install -e '.[serve]'")
from benchmarks.serving import (bad_inputs, invite, kill_during_uploads, live_server, load,  # noqa: E402
                               random_submission)
from competition.cli import main  # noqa: E402

pytestmark = pytest.mark.slow


def test_the_submit_command_uploads_to_the_real_server_and_prints_the_public_score(digits_workspace, tmp_path, capsys):
    root = digits_workspace.root
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_bytes(random_submission(root / "data/digits/private/solution.csv", seed=1))
    bad.write_text("ImageId,Label\n1,0\n1,0\n")
    with live_server(root, "digits", "--daily-limit", "2") as server:
        assert server.organiser and any(line.startswith("serving digits at") for line in server.lines)
        token = invite(root, "digits", "alice")
        assert main(["submit", str(good), "--server", server.url, "--token", token, "--note", "first"]) == 0
        assert "submission 1 of alice scored: public 0." in capsys.readouterr().out
        assert main(["submit", str(bad), "--server", server.url, "--token", token]) == 1
        assert "refused (400): bad.csv: line 3: ImageId 1 appears twice" in capsys.readouterr().err
        assert main(["submit", str(good), "--server", server.url, "--token", token]) == 0
        assert main(["submit", str(good), "--server", server.url, "--token", token]) == 1
        assert "refused (429)" in capsys.readouterr().err
        assert main(["submit", str(good), "--server", server.url, "--token", "wrong"]) == 1
        assert "refused (401)" in capsys.readouterr().err


def test_invite_refuses_an_sql_looking_name_and_revoke_ends_a_token(digits_workspace):
    root = str(digits_workspace.root)
    refused = subprocess.run([sys.executable, "-m", "competition", "--root", root, "invite", "digits",
                              "bob'; DROP TABLE participants; --"], capture_output=True, text=True)
    assert refused.returncode == 1 and "participant name" in refused.stderr and not refused.stdout
    invited = subprocess.run([sys.executable, "-m", "competition", "--root", root, "invite", "digits", "bob"],
                             capture_output=True, text=True)
    assert invited.returncode == 0
    token = invited.stdout.strip()
    revoked = subprocess.run([sys.executable, "-m", "competition", "--root", root, "invite", "digits", "bob",
                              "--revoke"], capture_output=True, text=True)
    assert revoked.returncode == 0
    with live_server(digits_workspace.root, "digits") as server:
        body = random_submission(digits_workspace.root / "data/digits/private/solution.csv", seed=2)
        import httpx
        answer = httpx.post(server.url + "/api/submissions", files={"file": ("s.csv", body)},
                            headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401


def test_concurrent_participants_get_every_accepted_submission_recorded_exactly_once(digits_workspace):
    root = digits_workspace.root
    solution = root / "data/digits/private/solution.csv"
    with live_server(root, "digits", "--daily-limit", "3") as server:
        tokens = {f"p{i}": invite(root, "digits", f"p{i}") for i in range(10)}
        bodies = {name: [random_submission(solution, i * 10 + k) for k in range(4)] for i, name in enumerate(tokens)}
        result = load(server, tokens, bodies, timeout_s=120)
    assert result["statuses"] == {"201": 30, "429": 10}       # 4 sent at once, 3 allowed: the 4th refused
    assert result["each_accepted_recorded_once"] and result["all_scored"] and result["server_up"]


def test_a_server_killed_during_uploads_keeps_every_acknowledged_submission(digits_workspace):
    result = kill_during_uploads(digits_workspace.root, participants=8, kill_after=12)
    assert result["acknowledged"] >= 12
    assert result["integrity_after_restart"] == "ok" and result["every_acknowledged_scored"]
    assert result["pending_after_restart"] == 0 and result["stray_uploads_after_restart"] == 0
    assert result["server_up_after_restart"]


def test_a_chunked_upload_over_the_limit_is_cut_off_while_it_is_still_being_sent(digits_workspace):
    root = digits_workspace.root
    with live_server(root, "digits", "--max-upload-bytes", "10000") as server:
        token = invite(root, "digits", "alice")
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"POST /api/submissions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                     + token.encode() + b"\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk, sent, total = b"x" * 65536, 0, 256 * 2**20
        try:
            while sent < total and not select.select([sock], [], [], 0)[0]:
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
        except OSError:             # the server closed the connection: fine, its answer is waiting
            pass
        status_line = sock.recv(4096).split(b"\r\n")[0]
        sock.close()
        assert b" 413 " in status_line and sent < total / 4
        assert server.alive


def test_every_bad_request_to_the_real_server_is_a_4xx_that_writes_nothing(digits_workspace):
    with live_server(digits_workspace.root, "digits") as server:
        rows = bad_inputs(server, digits_workspace.root)
        assert server.alive
    refused = [r for r in rows if r["status"] >= 400]
    assert [r["status"] for r in refused] == [413, 400, 400, 400, 400, 400, 404, 404, 400]
    assert all(r["rows_added"] == 0 and r["files_added"] == 0 for r in refused), refused
    stored = {r["case"]: r["reason"] for r in rows if r["status"] == 201}
    assert set(stored.values()) == {"note stored verbatim: True", "page shows it escaped: True"}


def test_41_slow_uploads_at_once_leave_the_leaderboard_answering_in_under_a_second(digits_workspace, monkeypatch):
    """Grading runs on the host's bounded pool, not on the request threads (Starlette's 40): with 41
    uploads each taking a second to grade, the leaderboard still answers at once."""
    import threading
    import time

    import httpx
    import uvicorn

    from benchmarks.serving import free_port
    from competition.hosting.host import open_host, upload_limit
    from competition.hosting.server import create_app

    paths = digits_workspace.competition("digits")
    host = open_host(paths, daily_limit=100)
    real_grade = type(host.grader).grade

    def slow_grade(self, path):
        time.sleep(1.0)
        return real_grade(self, path)
    monkeypatch.setattr(type(host.grader), "grade", slow_grade)
    tokens = [host.invite(f"p{i}") for i in range(41)]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(host, max_upload_bytes=upload_limit(host)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    while not server.started:
        time.sleep(0.05)
    body = random_submission(paths.solution, seed=3)
    statuses: list[int] = []

    def upload(token: str) -> None:
        answer = httpx.post(url + "/api/submissions", files={"file": ("s.csv", body)},
                            headers={"Authorization": f"Bearer {token}"}, timeout=300)
        statuses.append(answer.status_code)
    try:
        uploads = [threading.Thread(target=upload, args=(t,)) for t in tokens]
        for t in uploads:
            t.start()
        time.sleep(1.5)                     # every upload received, the pool grading the first of them
        waits = []
        for _ in range(5):
            start = time.perf_counter()
            assert httpx.get(url + "/api/leaderboard", timeout=30).status_code == 200
            waits.append(time.perf_counter() - start)
        for t in uploads:
            t.join(timeout=300)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert max(waits) < 1.0, waits
    assert sorted(statuses) == [201] * 41
