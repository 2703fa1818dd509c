"""Kaggle's rules, once, over `Submission` records of either store: the daily limit, the final picks,
sealed private scores, ranking and the shake-up.

A local workspace opts in per competition: `prepare NAME --daily-limit N --sealed` writes
data/NAME/rules.json, its one participant's submissions are the ledger's (ledger.py), and `select
NAME RUN-ID [RUN-ID]` picks the final submissions and reveals the private scores. `serve` keeps its
settings and many participants' submissions in SQLite (hosting/host.py) and asks these functions
the same questions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..errors import SubmissionLimitError
from ..prepared import read_prepared
from ..workspace import atomic_write_text
from .ledger import JsonlLedger, Submission
from .metrics import get_metric

MAX_SELECTED = 2        # Kaggle's final-submission count


@dataclass(frozen=True)
class Rules:
    """A local workspace's rules of one competition (rules.json)."""
    daily_limit: int | None = None          # scored submissions per UTC day; None: no limit
    sealed: bool = False                    # private scores hidden until final submissions are picked
    selected: tuple[str, ...] = field(default=())   # the picked run ids; non-empty reveals

    @property
    def hides_private(self) -> bool:
        return self.sealed and not self.selected


def read_rules(root: Path) -> Rules:
    path = Path(root) / "rules.json"
    if not path.is_file():
        return Rules()
    values = json.loads(path.read_text())
    return Rules(values.get("daily_limit"), values.get("sealed", False), tuple(values.get("selected", ())))


def write_rules(root: Path, rules: Rules) -> None:
    atomic_write_text(Path(root) / "rules.json", json.dumps(asdict(rules), indent=2) + "\n")


# ---------------------------------------------------------------- the daily limit


def used_today(submissions: list[Submission], participant: str, now: datetime) -> int:
    """The participant's submissions counted against today's (UTC) limit: every one received, but
    one whose grading failed (the harness's fault, not theirs)."""
    today = now.astimezone(timezone.utc).date().isoformat()
    return sum(s.participant == participant and s.counted and s.day == today for s in submissions)


def check_daily_limit(submissions: list[Submission], participant: str, limit: int | None, now: datetime,
                      name: str) -> None:
    """Refuse a submission past the day's limit, naming when the next one is possible (`retry_at`)."""
    if limit is None:
        return
    used = used_today(submissions, participant, now)
    if used >= limit:
        now = now.astimezone(timezone.utc)
        reopens = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), timezone.utc)
        hours, minutes = divmod(int((reopens - now).total_seconds()) // 60, 60)
        raise SubmissionLimitError(
            f"{name}: the daily limit of {limit} scored submission(s) is used up ({used} today, UTC); the next "
            f"is possible at {reopens:%Y-%m-%d %H:%M} UTC, in {hours}h {minutes:02d}m", retry_at=reopens)


def check_local_limit(root: Path, name: str, rules: Rules | None = None, now: datetime | None = None) -> None:
    """A local workspace's limit: its ledger's submissions today against rules.json's."""
    rules = rules or read_rules(root)
    check_daily_limit(JsonlLedger(root).submissions(), "you", rules.daily_limit, now or datetime.now(timezone.utc),
                      name)


# ---------------------------------------------------------------- final picks


def check_picks(submissions: list[Submission], participant: str, ids: list[str], max_selected: int,
                name: str) -> list[str]:
    """`ids` as final picks of `participant`: 1 to `max_selected` of their own scored submissions."""
    ids = list(dict.fromkeys(ids))
    if not 1 <= len(ids) <= max_selected:
        raise SubmissionLimitError(f"{name}: pick 1 to {max_selected} final submissions, not {len(ids)}")
    own = {s.id: s for s in submissions if s.participant == participant}
    unknown = [i for i in ids if i not in own]
    if unknown:
        scored = ", ".join(sorted(i for i, s in own.items() if s.scored)) or "none"
        raise SubmissionLimitError(f"{name}: {', '.join(unknown)} is not a scored submission of this competition; "
                                   f"scored: {scored[:300]}")
    unscored = [i for i in ids if not own[i].scored]
    if unscored:
        raise SubmissionLimitError(f"{name}: submission {unscored[0]} is {own[unscored[0]].status}, not scored: "
                                   f"it cannot be picked")
    return ids


def select_final(root: Path, name: str, run_ids: list[str]) -> Rules:
    """A local workspace: pick the final submissions (each a scored run) and so reveal the private scores."""
    rules = read_rules(root)
    picked = check_picks(JsonlLedger(root).submissions(), "you", run_ids, MAX_SELECTED, name)
    if rules.selected:
        raise SubmissionLimitError(f"{name}: final submissions were already picked: {', '.join(rules.selected)}")
    rules = Rules(rules.daily_limit, rules.sealed, tuple(picked))
    write_rules(root, rules)
    return rules


# ---------------------------------------------------------------- ranking


def ranks(scores: list[float | None], higher_is_better: bool) -> list[int | None]:
    """Each score's leaderboard rank (1 = best), in input order. Callers pass rows in submission
    order, so of two equal scores the earlier ranks first (Kaggle's tie rule); a missing score
    (unscored, NaN) gets no rank, so it never ranks above a scored row."""
    sign = -1 if higher_is_better else 1
    scored = [i for i, s in enumerate(scores) if s is not None and s == s]
    out: list[int | None] = [None] * len(scores)
    for rank, i in enumerate(sorted(scored, key=lambda i: sign * scores[i]), start=1):   # sorted() is stable
        out[i] = rank
    return out


def ranked_order(scores: list[float | None], higher_is_better: bool) -> list[int]:
    """Indices best first, the unranked (no score) last in their order."""
    rank = ranks(scores, higher_is_better)
    return sorted(range(len(scores)), key=lambda i: (rank[i] is None, rank[i] or 0, i))


def best_per_participant(submissions: list[Submission], higher_is_better: bool,
                         max_selected: int = MAX_SELECTED) -> list[dict]:
    """Each participant's best scored submission by public score (ties: the earliest) and the
    private score Kaggle ranks them by: the best of their final picks, or of their best
    `max_selected` public scores where they picked none. In order of first submission. A score
    undefined on its split (None) ranks below every defined one."""
    by_participant: dict[str, list[Submission]] = {}
    for s in submissions:
        if s.scored:
            by_participant.setdefault(s.participant, []).append(s)
    rows = []
    for name, subs in by_participant.items():
        order = ranked_order([s.public for s in subs], higher_is_better)
        top = subs[order[0]]
        picks = [s for s in subs if s.selected] or [subs[i] for i in order[:max_selected]]
        private = picks[ranked_order([s.private for s in picks], higher_is_better)[0]].private
        rows.append({"run": name, "public": top.public, "public_low": top.public_low,
                     "public_high": top.public_high, "entries": len(subs), "last": subs[-1].submitted_at,
                     "submission": top.id, "first": subs[0].id, "private": private,
                     "picked": [s.id for s in picks], "auto_picked": not any(s.selected for s in subs)})
    return rows


def shake_up_view(rows: list[dict], higher_is_better: bool, selected: tuple[str, ...] = ()) -> list[dict]:
    """Rows (`run`, `public`, `private`; submission order) ranked by private score, with the public
    rank and the shake-up (places moved: positive is up); final picks marked; unscored rows last,
    unranked. `select` shows a competition's submissions this way and `serve` its participants."""
    public_rank = ranks([r["public"] for r in rows], higher_is_better)
    private_rank = ranks([r["private"] for r in rows], higher_is_better)
    order = sorted(range(len(rows)), key=lambda i: (private_rank[i] is None, private_rank[i] or 0, i))
    return [{"rank": private_rank[i], "private": rows[i]["private"], "public": rows[i]["public"],
             "public_rank": public_rank[i],
             "shake_up": None if None in (public_rank[i], private_rank[i]) else public_rank[i] - private_rank[i],
             "run": rows[i]["run"], "final": rows[i]["run"] in selected} for i in order]


def private_leaderboard(root: Path) -> list[dict]:
    """A local workspace: every scored submission ranked by private score, with its public rank and the
    shake-up (how many places it moved: positive is up). Final picks are marked."""
    metric = get_metric(read_prepared(Path(root) / "public").metric)
    rows = [{"run": s.id, "public": s.public, "private": s.private} for s in JsonlLedger(root).submissions()
            if s.scored]
    return shake_up_view(rows, metric.higher_is_better, read_rules(root).selected)


def score_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_private_leaderboard(name: str, rows: list[dict]) -> str:
    lines = [f"private leaderboard of {name} (ranked by private score; shake-up: places moved from the public rank)",
             f"{'rank':>4}  {'private':>7}  {'public':>7}  {'public rank':>11}  {'shake-up':>8}  run"]
    for r in rows:
        move = f"{r['shake_up']:+d}" if r["shake_up"] else "0"
        lines.append(f"{r['rank'] or '-':>4}  {score_text(r['private']):>7}  {score_text(r['public']):>7}  "
                     f"{r['public_rank'] or '-':>11}  {move:>8}  {r['run']}{'  <- final' if r['final'] else ''}")
    finals = [r for r in rows if r["final"] and r["rank"] is not None]
    best = min(finals, key=lambda r: r["rank"], default=None)
    if best is not None:
        lines.append(f"final score: {best['private']:.4f} private ({best['run']}, the better of the final picks)")
    return "\n".join(lines)
