"""`serve`'s API through FastAPI's TestClient: Kaggle's rules for many participants on SQLite."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="the serve extra: pip install -e '.[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from competition.grading.grader import score_submission  # noqa: E402
from competition.prepared import load_test_ids, read_prepared  # noqa: E402
from competition.hosting.host import LimitError, new_token, open_host, upload_limit  # noqa: E402
from competition.workspace import CompetitionPaths  # noqa: E402
from competition.grading.rules import ranks  # noqa: E402
from competition.hosting.server import create_app  # noqa: E402

START = datetime(2026, 12, 2, 21, 30, tzinfo=timezone.utc)


class Clock:
    """The server's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Served:
    paths: CompetitionPaths
    clock: Clock
    host: object
    client: TestClient
    organiser: str
    alice: str
    bob: str

    def post(self, token: str | None, body: bytes, name: str = "submission.csv", note: str = ""):
        return self.client.post("/api/submissions", files={"file": (name, body, "text/csv")}, data={"note": note},
                                headers=auth(token))

    def rows(self) -> int:
        with sqlite3.connect(self.host.database) as db:
            return db.execute("SELECT count(*) FROM submissions").fetchone()[0]

    def uploads(self) -> list[str]:
        return sorted(p.name for p in self.host.uploads.iterdir())


def auth(token: str | None) -> dict:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


SAME_ORIGIN = {"Origin": "http://testserver"}      # what a browser sends with a form of the server's own pages


def session(served: "Served", token: str) -> dict:
    """The cookie a login with `token` leaves in the browser."""
    return {"competition_session": served.host.open_session(token)}


def submission(paths: CompetitionPaths, public_right: int, private_right: int) -> bytes:
    """A label submission right on the first `public_right` Public rows and `private_right` Private rows."""
    solution = pd.read_csv(paths.solution, dtype=str)
    lines, seen = ["ImageId,Label"], {"Public": 0, "Private": 0}
    for image_id, label, usage in zip(solution["ImageId"], solution["Label"], solution["Usage"]):
        right = seen[usage] < (public_right if usage == "Public" else private_right)
        seen[usage] += 1
        lines.append(f"{image_id},{label if right else (int(label) + 1) % 10}")
    return ("\n".join(lines) + "\n").encode()


def serve_digits(workspace, daily_limit: int = 3, max_upload_bytes: int | None = None) -> Served:
    paths = workspace.competition("digits")
    clock = Clock(START)
    host = open_host(paths, daily_limit=daily_limit, clock=clock)
    organiser = host.ensure_organiser()
    client = TestClient(create_app(host, max_upload_bytes=max_upload_bytes or upload_limit(host)), headers=SAME_ORIGIN)
    return Served(paths=paths, clock=clock, host=host, client=client, organiser=organiser,
                  alice=host.invite("alice"), bob=host.invite("bob"))


@pytest.fixture
def served(digits_workspace) -> Served:
    return serve_digits(digits_workspace)


def test_daily_limit_allows_n_submissions_refuses_the_next_and_reopens_at_midnight_utc(served):
    body = submission(served.paths, 50, 100)
    for n in range(1, 4):
        answer = served.post(served.alice, body)
        assert answer.status_code == 201 and answer.json()["used_today"] == n
    refused = served.post(served.alice, body)
    assert refused.status_code == 429
    assert "2026-12-03 00:00 UTC" in refused.json()["detail"] and "in 2h 30m" in refused.json()["detail"]
    assert refused.json()["retry_at"] == "2026-12-03T00:00:00+00:00"
    assert refused.headers["Retry-After"] == str(150 * 60)
    assert served.post(served.bob, body).status_code == 201           # a limit is each participant's own
    served.clock.now = datetime(2026, 12, 2, 23, 59, 59, tzinfo=timezone.utc)
    assert served.post(served.alice, body).status_code == 429
    served.clock.now = datetime(2026, 12, 3, 0, 0, 1, tzinfo=timezone.utc)
    assert served.post(served.alice, body).status_code == 201
    assert served.rows() == 5


def test_a_submission_the_grader_rejects_does_not_count_and_leaves_nothing(served):
    bad = b"ImageId,Label\n1,0\n"
    for _ in range(5):
        refused = served.post(served.alice, bad)
        assert refused.status_code == 400 and "submission.csv" in refused.json()["detail"]
    assert served.rows() == 0 and served.uploads() == []
    assert all(served.post(served.alice, submission(served.paths, 9, 9)).status_code == 201 for _ in range(3))


def test_the_limit_is_counted_in_one_transaction_when_requests_race(served, monkeypatch):
    caller, body = served.host.caller(served.alice), submission(served.paths, 20, 20)
    barrier, outcomes = threading.Barrier(8), []

    def one(i: int) -> None:
        upload = served.host.incoming_path()
        upload.write_bytes(body)
        barrier.wait()
        try:
            served.host.submit(caller, upload, file_name=f"{i}.csv")
            outcomes.append("scored")
        except LimitError:
            outcomes.append("refused")
    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["refused"] * 5 + ["scored"] * 3
    assert served.rows() == 3 and len(served.uploads()) == 3


PARTICIPANT_ENDPOINTS = [("post", "/api/submissions"), ("get", "/api/submissions"), ("get", "/api/submissions/1"),
                         ("post", "/api/selection")]
ORGANISER_ENDPOINTS = [("post", "/api/reveal"), ("post", "/api/rescore"), ("post", "/api/submissions/1/disqualify"),
                       ("post", "/api/participants")]


def request(served: Served, method: str, path: str, token: str | None):
    if path == "/api/submissions" and method == "post":
        return served.post(token, submission(served.paths, 30, 30))
    body = {"/api/selection": {"submission_ids": [1]}, "/api/participants": {"name": "carol"},
            "/api/submissions/1/disqualify": {"reason": "test"}}.get(path)
    return served.client.request(method.upper(), path, json=body, headers=auth(token))


@pytest.mark.parametrize("method,path", PARTICIPANT_ENDPOINTS + ORGANISER_ENDPOINTS)
def test_every_endpoint_refuses_a_missing_unknown_or_revoked_token_with_401(served, method, path):
    served.host.invite("dave")
    revoked = served.host.invite("erin")
    served.host.revoke("erin")
    for token in (None, "not-a-token", revoked):
        answer = request(served, method, path, token)
        assert answer.status_code == 401, (token, answer.json())
        assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert served.rows() == 0


@pytest.mark.parametrize("method,path", ORGANISER_ENDPOINTS)
def test_organiser_endpoints_refuse_participants_with_403_and_serve_the_organiser(served, method, path):
    assert served.post(served.alice, submission(served.paths, 40, 40)).status_code == 201
    assert request(served, method, path, served.alice).status_code == 403
    assert request(served, method, path, served.organiser).status_code in (200, 201)


@pytest.mark.parametrize("method,path", [("post", "/api/submissions"), ("post", "/api/selection")])
def test_the_organiser_neither_submits_nor_picks(served, method, path):
    assert request(served, method, path, served.organiser).status_code == 403


def private_numbers(host) -> set[str]:
    """Every private score and bound in the database, as a page or JSON could spell it."""
    with sqlite3.connect(host.database) as db:
        values = [v for row in db.execute("SELECT private, private_low, private_high FROM submissions") for v in row]
    return {text for v in values for text in (repr(v), f"{v:.4f}", f"{v:.3f}")}


def every_participant_response(served: Served) -> list[tuple[str, str]]:
    """(what, body) of every participant-facing endpoint and page, errors included."""
    c, alice = served.client, served.alice
    cookie = session(served, alice)
    own = c.get("/api/submissions", headers=auth(alice)).json()["submissions"][0]["id"]
    bobs = c.get("/api/submissions", headers=auth(served.bob)).json()["submissions"][0]["id"]
    answers = [("submit", served.post(alice, submission(served.paths, 70, 10))),
               ("limit", served.post(alice, submission(served.paths, 70, 10))),
               ("rejected", served.post(alice, b"ImageId,Label\n1,0\n")),
               ("history", c.get("/api/submissions", headers=auth(alice))),
               ("one", c.get(f"/api/submissions/{own}", headers=auth(alice))),
               ("another's", c.get(f"/api/submissions/{bobs}", headers=auth(alice))),
               ("select", c.post("/api/selection", json={"submission_ids": [own]}, headers=auth(alice))),
               ("select another's", c.post("/api/selection", json={"submission_ids": [bobs]}, headers=auth(alice))),
               ("leaderboard", c.get("/api/leaderboard")), ("page", c.get("/")), ("login", c.get("/login")),
               ("me", c.get("/me", cookies=cookie)),
               ("me submit", c.post("/me/submissions", files={"file": ("x.csv", b"junk")}, cookies=cookie)),
               ("me select", c.post("/me/selection", data={"pick": str(own)}, cookies=cookie,
                                    follow_redirects=True)),
               ("openapi", c.get("/api/openapi.json"))]
    for what, answer in answers:
        assert answer.status_code < 500, what
    return [(what, answer.text) for what, answer in answers]


def keys_of(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_of(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_of(v)}
    return set()


def test_private_scores_appear_in_no_participant_response_until_the_organiser_reveals_them(served):
    assert served.post(served.alice, submission(served.paths, 100, 10)).status_code == 201   # public .926, private .040
    assert served.post(served.alice, submission(served.paths, 20, 200)).status_code == 201   # public .185, private .794
    assert served.post(served.bob, submission(served.paths, 60, 130)).status_code == 201
    sealed = private_numbers(served.host)
    publics = {f"{v:.4f}" for r in served.host.history(served.host.caller(served.organiser)) for v in
               (r["public"]["value"], r["public"]["low"], r["public"]["high"])}
    assert not sealed & publics                  # the check below could not tell them apart otherwise
    for what, body in every_participant_response(served):
        leaked = [n for n in sealed if n in body]
        assert not leaked, f"{what} shows private score {leaked}"
        if body.lstrip().startswith("{"):
            assert not {k for k in keys_of(json.loads(body)) if k.startswith("private")}, what
    assert "private" not in served.client.get("/api/leaderboard").json()
    assert served.client.post("/api/reveal", headers=auth(served.organiser)).status_code == 200
    board = served.client.get("/api/leaderboard").json()
    # alice picked her worst submission (every_participant_response's pick), so bob is first
    assert board["revealed"] and [r["participant"] for r in board["private"]] == ["bob", "alice"]
    history = served.client.get("/api/submissions", headers=auth(served.alice)).json()["submissions"]
    assert all(s["private"]["value"] is not None for s in history)
    assert f"{board['private'][0]['private']:.4f}" in served.client.get("/").text


def test_final_picks_are_own_scored_submissions_at_most_the_competitions_number(served):
    ids = [served.post(served.alice, submission(served.paths, n, n)).json()["id"] for n in (10, 20, 30)]
    bobs = served.post(served.bob, submission(served.paths, 5, 5)).json()["id"]
    pick = lambda token, chosen: served.client.post("/api/selection", json={"submission_ids": chosen},  # noqa: E731
                                                    headers=auth(token))
    too_many = pick(served.alice, ids)
    assert too_many.status_code == 400 and "1 to 2" in too_many.json()["detail"]
    assert pick(served.alice, [ids[0], bobs]).status_code == 404          # another's id: not found, nothing changed
    assert pick(served.alice, [ids[0], ids[2]]).json() == {"selected": [ids[0], ids[2]]}
    assert pick(served.alice, [ids[1]]).status_code == 200               # picks can change before the reveal
    history = served.client.get("/api/submissions", headers=auth(served.alice)).json()["submissions"]
    assert [s["selected"] for s in history] == [False, True, False]
    served.client.post("/api/reveal", headers=auth(served.organiser))
    assert pick(served.alice, [ids[0]]).status_code == 409
    assert served.post(served.alice, submission(served.paths, 1, 1)).status_code == 409


def test_the_private_board_ranks_final_picks_else_the_best_public_ones_with_the_shake_up(served):
    served.post(served.alice, submission(served.paths, 100, 50))
    served.post(served.alice, submission(served.paths, 90, 240))
    served.post(served.alice, submission(served.paths, 10, 252))         # best private, but 3rd public: not auto-picked
    served.post(served.bob, submission(served.paths, 80, 200))
    served.client.post("/api/reveal", headers=auth(served.organiser))
    private = served.client.get("/api/leaderboard").json()["private"]
    assert [(r["participant"], r["rank"], r["public_rank"], r["shake_up"]) for r in private] == \
        [("alice", 1, 1, 0), ("bob", 2, 2, 0)]
    assert private[0]["private"] == pytest.approx(240 / 252)             # the better of the 2 auto-picked


def test_a_tie_ranks_the_earlier_submission_first_and_unscored_rows_never_rank(served):
    same = submission(served.paths, 60, 60)
    served.post(served.bob, same)
    served.clock.now += timedelta(minutes=1)
    served.post(served.alice, same)
    assert [r["participant"] for r in served.client.get("/api/leaderboard").json()["public"]] == ["bob", "alice"]
    assert ranks([None, 0.5, float("nan"), 0.7, 0.5], higher_is_better=True) == [None, 2, None, 1, 3]
    assert ranks([0.3, None, 0.1], higher_is_better=False) == [2, None, 1]


def test_serve_grades_with_the_same_grader_as_score(served, tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes(submission(served.paths, 77, 123))
    info = read_prepared(served.paths.public)
    _, score = score_submission(path, served.paths.solution, info.submission, load_test_ids(served.paths.public),
                                info.metric)
    answer = served.post(served.alice, path.read_bytes()).json()
    assert answer["public"] == {"value": score.public.value, "low": score.public.low, "high": score.public.high}
    organiser_view = served.client.get(f"/api/submissions/{answer['id']}", headers=auth(served.organiser)).json()
    assert organiser_view["private"]["value"] == score.private.value


def test_disqualified_submissions_leave_the_board_and_show_the_reason(served):
    sid = served.post(served.alice, submission(served.paths, 100, 100)).json()["id"]
    served.post(served.bob, submission(served.paths, 50, 50))
    answer = served.client.post(f"/api/submissions/{sid}/disqualify", json={"reason": "hand-labelled test"},
                                headers=auth(served.organiser))
    assert answer.status_code == 200 and answer.json()["status"] == "disqualified"
    assert [r["participant"] for r in served.client.get("/api/leaderboard").json()["public"]] == ["bob"]
    assert "hand-labelled test" in served.client.get("/me", cookies=session(served, served.alice)).text


def test_rescore_grades_every_stored_file_again_against_corrected_answers(served):
    served.post(served.alice, submission(served.paths, 108, 252))
    frame = pd.read_csv(served.paths.solution, dtype=str)
    frame.loc[0, "Label"] = str((int(frame.loc[0, "Label"]) + 1) % 10)        # the organiser fixes an answer
    frame.to_csv(served.paths.solution, index=False)
    host = open_host(served.paths, clock=served.clock)
    client = TestClient(create_app(host, max_upload_bytes=upload_limit(host)), headers=SAME_ORIGIN)
    answer = client.post("/api/rescore", headers=auth(served.organiser))
    assert answer.json() == {"changed": 1}
    assert client.get("/api/leaderboard").json()["public"][0]["public"] == pytest.approx(107 / 108)


def test_a_server_killed_while_grading_leaves_a_pending_row_that_the_next_start_grades(served, monkeypatch):
    caller = served.host.caller(served.alice)
    upload = served.host.incoming_path()
    upload.write_bytes(submission(served.paths, 54, 54))
    half_received = served.host.incoming_path()
    half_received.write_bytes(b"ImageId,Label\n1,")

    def killed(path):
        raise SystemExit("killed")
    monkeypatch.setattr(type(served.host.grader), "grade", lambda self, path: killed(path))
    with pytest.raises(SystemExit):
        served.host.submit(caller, upload, file_name="s.csv")
    assert served.client.get("/api/leaderboard").json()["public"] == []      # pending: on no board
    monkeypatch.undo()
    restarted = open_host(served.paths, clock=served.clock)
    assert restarted.recover() == {"graded": 1, "dropped": 0, "failed": 0, "orphan_files": 1}
    assert [r["status"] for r in restarted.history(caller)] == ["scored"]
    assert served.uploads() == ["1.csv"]


BAD_UPLOADS = {
    "binary junk": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20, "submission.csv", "not UTF-8"),
    "not UTF-8": ("ImageId,Label\n1,é\n".encode("latin-1"), "submission.csv", "not UTF-8"),
    "wrong header": (b"id,label\n1,0\n", "submission.csv", "line 1: the header must hold the columns 'ImageId,Label'"),
    "an id of 4,400 digits": (b"ImageId,Label\n" + b"7" * 4400 + b",0\n", "submission.csv", "is not an integer"),
    "a doubled minus": (b"ImageId,Label\n--1,0\n", "submission.csv", "ImageId '--1' is not an integer"),
    "path-like name": (None, "../../x.csv", "plain file name"),
    "absolute name": (None, "/etc/passwd", "plain file name"),
}


@pytest.mark.parametrize("case", BAD_UPLOADS)
def test_a_bad_upload_is_a_clear_400_with_nothing_written(served, case):
    body, name, reason = BAD_UPLOADS[case]
    answer = served.post(served.alice, body or submission(served.paths, 5, 5), name=name)
    assert answer.status_code == 400 and reason in answer.json()["detail"], answer.json()
    assert served.rows() == 0 and served.uploads() == []
    assert not (served.paths.root.parent.parent / "x.csv").exists()


def test_an_upload_over_the_limit_is_refused_with_413_before_it_is_read(digits_workspace):
    served = serve_digits(digits_workspace, max_upload_bytes=1000)
    declared = served.post(served.alice, b"ImageId,Label\n" + b"1,0\n" * 100_000)
    assert declared.status_code == 413 and "1,000 bytes" in declared.json()["detail"]
    chunked = served.client.post("/api/submissions", content=(b"x" * 1024 for _ in range(1000)), headers={
        **auth(served.alice), "Content-Type": "multipart/form-data; boundary=b"})   # no Content-Length
    assert chunked.status_code == 413       # cut off while still arriving: tests/test_serve_live.py
    assert served.rows() == 0 and served.uploads() == []


def test_sql_looking_names_and_notes_are_refused_or_stored_as_text(served):
    name = "x'); DROP TABLE submissions; --"
    refused = served.client.post("/api/participants", json={"name": name}, headers=auth(served.organiser))
    assert refused.status_code == 400 and "participant name" in refused.json()["detail"]
    note = "'; DELETE FROM submissions WHERE '1'='1"
    sid = served.post(served.alice, submission(served.paths, 5, 5), note=note).json()["id"]
    assert served.client.get(f"/api/submissions/{sid}", headers=auth(served.alice)).json()["note"] == note
    assert served.rows() == 1


def test_html_in_notes_and_names_is_escaped_on_every_page(served):
    note = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    assert served.post(served.alice, submission(served.paths, 5, 5), note=note).status_code == 201
    me = served.client.get("/me", cookies=session(served, served.alice)).text
    assert note not in me and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in me
    for page in ("/", "/login"):
        assert "<script>" not in served.client.get(page).text
    refused = served.client.post("/api/participants", json={"name": "<b>bold</b>"}, headers=auth(served.organiser))
    assert refused.status_code == 400


def test_a_note_with_control_characters_is_refused(served):
    answer = served.post(served.alice, submission(served.paths, 5, 5), note="line\nbreak")
    assert answer.status_code == 400 and "control characters" in answer.json()["detail"]
    assert served.rows() == 0


def test_the_participant_page_uploads_through_the_form_and_lists_the_history(served):
    login = served.client.post("/login", data={"token": served.alice}, follow_redirects=False)
    assert login.status_code == 303 and "httponly" in login.headers["set-cookie"].lower()
    assert served.alice not in login.headers["set-cookie"]                 # the cookie holds a session id, not the token
    cookie = {"competition_session": login.cookies["competition_session"]}
    assert served.client.post("/login", data={"token": "wrong"}).status_code == 401
    uploaded = served.client.post("/me/submissions", files={"file": ("mine.csv", submission(served.paths, 50, 50))},
                                  data={"note": "first try"}, cookies=cookie, follow_redirects=False)
    assert uploaded.status_code == 303
    page = served.client.get(uploaded.headers["location"], cookies=cookie).text
    assert "Submission 1 scored" in page and "mine.csv" in page and "first try" in page and "1 of 3" in page
    refused = served.client.post("/me/submissions", files={"file": ("bad.csv", b"ImageId,Label\n")}, cookies=cookie)
    assert refused.status_code == 400 and "bad.csv" in refused.text
    served.client.cookies.clear()                                                   # the login's cookie
    assert served.client.get("/me", follow_redirects=False).status_code == 303     # no cookie: to the login page


def test_a_grader_fault_message_names_the_uploaded_file_not_the_servers_path(served):
    answer = served.post(served.alice, b"ImageId,Label\n1,0\n1,0\n", name="mine.csv")
    assert answer.json()["detail"].startswith("mine.csv: line 3") and str(served.host.uploads) not in answer.text


def test_the_organiser_token_is_made_once_and_a_lost_one_can_be_replaced(served):
    assert served.host.ensure_organiser() is None                       # a restart prints no new token
    replacement = served.host.ensure_organiser(new=True)
    assert request(served, "post", "/api/reveal", served.organiser).status_code == 401
    assert request(served, "post", "/api/reveal", replacement).status_code == 200


def test_an_invite_token_never_reads_as_an_option_on_the_command_line():
    """`submit --token TOKEN`: a token starting with "-" would be taken for a flag by argparse."""
    from competition.cli import build_parser
    tokens = [new_token() for _ in range(2000)]
    assert not any(t.startswith("-") for t in tokens) and len(set(tokens)) == len(tokens)
    args = build_parser().parse_args(["submit", "s.csv", "--server", "http://127.0.0.1:1", "--token", tokens[0]])
    assert args.token == tokens[0]


# ---------------------------------------------------------------- hosting a meetup can trust


def test_a_row_the_grader_breaks_on_is_marked_failed_and_the_server_still_starts(served, monkeypatch):
    """A stored file the grader raises a bug on (not a participant's fault) leaves a `failed` row with its
    reason, counted nowhere; a restart grades the pending rows a stopped server left and starts."""
    caller = served.host.caller(served.alice)
    for i in range(2):
        upload = served.host.incoming_path()
        upload.write_bytes(submission(served.paths, 5, 5))
        served.host.accept(caller, upload, file_name=f"{i}.csv")          # pending: the server stopped here

    def broken(self, path):
        raise ValueError("invalid literal for int() with base 10: '--1'")
    monkeypatch.setattr(type(served.host.grader), "grade", broken)
    restarted = open_host(served.paths, clock=served.clock)
    assert restarted.recover() == {"graded": 0, "dropped": 0, "failed": 2, "orphan_files": 0}
    history = restarted.history(caller)
    assert [s["status"] for s in history] == ["failed", "failed"] and "ValueError" in history[0]["reason"]
    assert restarted.used_today(caller) == 0                                 # failed rows count nowhere
    client = TestClient(create_app(restarted, max_upload_bytes=upload_limit(restarted)), headers=SAME_ORIGIN)
    assert client.get("/").status_code == 200 and client.get("/api/leaderboard").json()["public"] == []
    answer = client.post("/api/submissions", files={"file": ("s.csv", submission(served.paths, 5, 5))},
                         headers=auth(served.alice))
    assert answer.status_code == 500 and "does not count toward your limit" in answer.json()["detail"]


def test_a_score_undefined_on_a_split_ranks_last_and_shows_a_dash(served):
    served.post(served.bob, submission(served.paths, 30, 30))
    served.post(served.alice, submission(served.paths, 90, 90))
    with sqlite3.connect(served.host.database) as db:           # ROC AUC of a split with one class: no score
        db.execute("UPDATE submissions SET public = NULL, public_low = NULL, public_high = NULL, private = NULL "
                   "WHERE id = 2")
    board = served.client.get("/api/leaderboard")
    assert board.status_code == 200
    assert [(r["participant"], r["rank"]) for r in board.json()["public"]] == [("bob", 1), ("alice", None)]
    page = served.client.get("/")
    assert page.status_code == 200 and "<td>-</td><td>alice</td>" in page.text
    served.client.post("/api/reveal", headers=auth(served.organiser))
    private = served.client.get("/api/leaderboard").json()["private"]
    assert [(r["participant"], r["rank"]) for r in private] == [("bob", 1), ("alice", None)]
    assert served.client.get("/").status_code == 200


def test_logout_and_revocation_end_the_session_on_the_server(served):
    login = served.client.post("/login", data={"token": served.alice}, follow_redirects=False)
    cookie = {"competition_session": login.cookies["competition_session"]}
    served.client.cookies.clear()
    assert served.client.get("/me", cookies=cookie).status_code == 200
    assert served.client.post("/logout", cookies=cookie, follow_redirects=False).status_code == 303
    assert served.client.get("/me", cookies=cookie, follow_redirects=False).status_code == 303   # copied cookie: dead
    other = session(served, served.bob)
    assert served.client.get("/me", cookies=other).status_code == 200
    served.host.revoke("bob")
    assert served.client.get("/me", cookies=other, follow_redirects=False).status_code == 303


@pytest.mark.parametrize("headers, allowed", [
    ({"Origin": "http://testserver"}, True),
    ({"Origin": "http://evil.example"}, False),
    ({"Origin": "http://testserver:8080"}, False),                      # a sibling port is another origin
    ({"Origin": "null", "Referer": "http://testserver/me"}, True),
    ({"Referer": "http://sibling.testserver/me"}, False),
    ({}, False),
])
def test_a_cookie_authenticated_post_from_another_origin_is_refused(digits_workspace, headers, allowed):
    served = serve_digits(digits_workspace)
    client = TestClient(served.client.app)                              # no default Origin header
    sid = served.post(served.alice, submission(served.paths, 10, 10)).json()["id"]
    answer = client.post("/me/selection", data={"pick": str(sid)}, cookies=session(served, served.alice),
                         headers=headers, follow_redirects=False)
    assert (answer.status_code == 303) == allowed and (answer.status_code == 403) == (not allowed)
    assert served.host.history(served.host.caller(served.alice))[0]["selected"] == allowed


def test_the_session_cookie_is_secure_under_https_and_behind_a_proxy_that_says_so(digits_workspace):
    served = serve_digits(digits_workspace)
    proxied = TestClient(create_app(served.host, max_upload_bytes=10_000, trusted_proxies="*"))
    plain = proxied.post("/login", data={"token": served.alice}, headers=SAME_ORIGIN, follow_redirects=False)
    assert plain.status_code == 303 and "secure" not in plain.headers["set-cookie"].lower()
    behind = proxied.post("/login", data={"token": served.alice}, follow_redirects=False,
                          headers={"X-Forwarded-Proto": "https", "Origin": "https://testserver"})
    assert behind.status_code == 303 and "secure" in behind.headers["set-cookie"].lower()


def test_rejected_uploads_are_rate_limited_per_participant_with_a_clear_429(served):
    for _ in range(10):
        assert served.post(served.alice, b"ImageId,Label\n1,0\n").status_code == 400
    limited = served.post(served.alice, submission(served.paths, 50, 50))
    assert limited.status_code == 429 and "10 rejected uploads" in limited.json()["detail"]
    assert int(limited.headers["Retry-After"]) == 600
    assert served.post(served.bob, submission(served.paths, 50, 50)).status_code == 201     # others unaffected
    served.clock.now += timedelta(minutes=11)
    assert served.post(served.alice, submission(served.paths, 50, 50)).status_code == 201


@pytest.mark.parametrize("sid", ["99999999999999999999", "9223372036854775808", "-1", "0", "²", "1e3"])
def test_ids_past_64_bits_or_not_plain_digits_are_not_found(served, sid):
    served.post(served.alice, submission(served.paths, 10, 10))
    assert served.client.get(f"/api/submissions/{sid}", headers=auth(served.alice)).status_code == 404
    assert served.client.post("/api/selection", json={"submission_ids": [sid]},
                              headers=auth(served.alice)).status_code == 404
    assert served.client.post(f"/api/submissions/{sid}/disqualify", json={"reason": "x"},
                              headers=auth(served.organiser)).status_code == 404
    page = served.client.post("/me/selection", data={"pick": sid}, cookies=session(served, served.alice))
    assert page.status_code < 500


@pytest.mark.parametrize("name", ["Alice", "ALICE", "ａｌｉｃｅ", "\u0430lice"])        # the last: a Cyrillic а
def test_a_name_equal_to_anothers_but_for_case_form_or_lookalike_letters_is_refused(served, name):
    answer = served.client.post("/api/participants", json={"name": name}, headers=auth(served.organiser))
    assert answer.status_code == 400 and "participant name" in answer.json()["detail"]


def test_after_the_deadline_uploads_get_409_with_the_time_and_the_pages_say_it_ended(served):
    from competition.hosting.host import parse_deadline
    served.host.set_deadline(parse_deadline("2026-12-02T22:00Z"))
    assert "Submissions close at 2026-12-02 22:00 UTC" in served.client.get("/").text
    assert served.post(served.alice, submission(served.paths, 10, 10)).status_code == 201
    served.clock.now = datetime(2026, 12, 2, 22, 0, 1, tzinfo=timezone.utc)
    refused = served.post(served.alice, submission(served.paths, 10, 10))
    assert refused.status_code == 409 and "ended at 2026-12-02 22:00 UTC" in refused.json()["detail"]
    assert "The competition has ended" in served.client.get("/").text
    assert served.client.get("/api/leaderboard").json()["ended"] is True


def test_every_response_carries_the_security_headers(served):
    for answer in (served.client.get("/"), served.client.get("/api/leaderboard"), served.post(None, b"")):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


def test_pages_under_a_path_prefix_link_within_it(digits_workspace):
    served = serve_digits(digits_workspace)
    client = TestClient(create_app(served.host, max_upload_bytes=10_000), root_path="/meetup", headers=SAME_ORIGIN)
    page = client.get("/").text
    assert 'href="/meetup/login"' in page and 'href="/login"' not in page
    login = client.post("/login", data={"token": served.alice}, follow_redirects=False)
    assert login.headers["location"] == "/meetup/me" and "path=/meetup" in login.headers["set-cookie"].lower()


def test_the_api_docs_declare_the_bearer_scheme_and_the_upload_form(served):
    schema = served.client.get("/api/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    upload = schema["paths"]["/api/submissions"]["post"]
    assert {"HTTPBearer": []} in upload["security"]
    assert set(upload["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]) == {"file", "note"}


def test_an_upload_is_refused_with_507_when_the_disk_is_nearly_full(served, monkeypatch):
    import shutil
    from collections import namedtuple
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 ** 9, 10 ** 9 - 1000, 1000))
    answer = served.post(served.alice, submission(served.paths, 10, 10))
    assert answer.status_code == 507 and "disk" in answer.json()["detail"]
    assert served.rows() == 0 and served.uploads() == []


def test_the_organiser_page_invites_revokes_disqualifies_and_reveals(served):
    cookie = session(served, served.organiser)
    assert served.client.get("/me", cookies=cookie, follow_redirects=False).headers["location"] == "/organiser"
    sid = served.post(served.alice, submission(served.paths, 60, 60)).json()["id"]
    page = served.client.get("/organiser", cookies=cookie).text
    assert "alice" in page and "Reveal the private leaderboard" in page
    invited = served.client.post("/organiser/invite", data={"name": "carol"}, cookies=cookie)
    token = invited.text.split('id="token">')[1].split("<")[0]
    assert served.host.caller(token).name == "carol"
    served.client.post("/organiser/disqualify", data={"submission": str(sid), "reason": "late"}, cookies=cookie)
    assert served.host.history(served.host.caller(served.alice))[0]["status"] == "disqualified"
    served.client.post("/organiser/revoke", data={"name": "bob"}, cookies=cookie)
    assert served.post(served.bob, submission(served.paths, 10, 10)).status_code == 401
    served.client.post("/organiser/reveal", data={}, cookies=cookie)
    assert served.host.revealed and 'id="private"' in served.client.get("/organiser", cookies=cookie).text
    assert served.client.post("/organiser/reveal", cookies=session(served, served.alice)).status_code == 403


def test_a_database_of_the_previous_schema_is_brought_up_to_date_keeping_its_rows(digits_workspace):
    paths = digits_workspace.competition("digits")
    paths.root.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(paths.root / "server.sqlite") as db:
        db.executescript("""
            CREATE TABLE participants (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
                token_hash TEXT UNIQUE, invited_at TEXT NOT NULL, revoked_at TEXT);
            CREATE TABLE submissions (id INTEGER PRIMARY KEY AUTOINCREMENT, participant_id INTEGER NOT NULL,
                submitted_at TEXT NOT NULL, day TEXT NOT NULL, file_name TEXT NOT NULL, stored TEXT NOT NULL,
                note TEXT NOT NULL DEFAULT '', status TEXT NOT NULL CHECK (status IN ('pending', 'scored',
                'disqualified')), public REAL, public_low REAL, public_high REAL, private REAL, private_low REAL,
                private_high REAL, selected INTEGER NOT NULL DEFAULT 0, disqualified_reason TEXT);
            INSERT INTO participants VALUES (1, 'alice', 'participant', 'h', '2026-12-01T00:00:00+00:00', NULL);
            INSERT INTO submissions (participant_id, submitted_at, day, file_name, stored, status, public,
                public_low, public_high, private, private_low, private_high, disqualified_reason)
                VALUES (1, '2026-12-01T10:00:00+00:00', '2026-12-01', 'a.csv', '1.csv', 'disqualified', 0.5, 0.4,
                        0.6, 0.5, 0.4, 0.6, 'copied');
        """)
    host = open_host(paths)
    [row] = host.history(host.caller(host.ensure_organiser()))
    assert (row["status"], row["reason"], row["public"]["value"]) == ("disqualified", "copied", 0.5)
    with pytest.raises(Exception, match="taken"):
        host.invite("Alice")
