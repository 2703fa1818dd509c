"""Kaggle's submission rules, opt-in per competition: a daily limit and a sealed private score.

`prepare NAME --daily-limit N --sealed` writes data/NAME/rules.json (beside public/ and
private/). The grader keeps a ledger of every scored submission, data/NAME/scored.jsonl, with
its UTC time and both scores, so the rules can be checked and the private leaderboard revealed
later from it. While a competition is sealed no output shows a private score; `select NAME
RUN-ID [RUN-ID]` picks at most two final submissions and reveals the private leaderboard.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..errors import SubmissionLimitError
from .metrics import get_metric
from ..prepared import read_prepared
from .leaderboard import lock_of
from ..workspace import atomic_write_text, file_lock

MAX_SELECTED = 2        # Kaggle's final-submission count


@dataclass(frozen=True)
class Rules:
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


def read_ledger(root: Path) -> list[dict]:
    path = Path(root) / "scored.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def record_scored(root: Path, run: str, public: float, private: float, now: datetime | None = None,
                  replace: bool = False, entry: dict | None = None) -> None:
    """Append one scored submission to the ledger, under its lock (two scorers lose no row), rewritten
    atomically (never half a line). `replace`: a run publishing again (resumed) replaces its earlier
    row instead of counting twice. `entry`: its leaderboard row (`leaderboard.Entry` fields, the
    private score unhidden), from which the board is rendered; None for a score kept off the board."""
    now = now or datetime.now(timezone.utc)
    path = Path(root) / "scored.jsonl"
    with file_lock(lock_of(path)):
        rows = [r for r in read_ledger(root) if not (replace and r["run"] == run)]
        rows += [{"time": now.isoformat(), "run": run, "public": public, "private": private,
                  **({} if entry is None else {"entry": entry})}]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def check_daily_limit(root: Path, name: str, rules: Rules, now: datetime | None = None) -> None:
    """Refuse a submission past the day's limit, naming when the next one is possible."""
    if rules.daily_limit is None:
        return
    now = now or datetime.now(timezone.utc)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = [r for r in read_ledger(root) if datetime.fromisoformat(r["time"]) >= day_start]
    if len(today) >= rules.daily_limit:
        reopens = day_start + timedelta(days=1)
        wait = reopens - now
        hours, minutes = divmod(int(wait.total_seconds()) // 60, 60)
        raise SubmissionLimitError(
            f"{name}: the daily limit of {rules.daily_limit} scored submission(s) is used up "
            f"({len(today)} today, UTC); the next is possible at {reopens:%Y-%m-%d %H:%M} UTC, "
            f"in {hours}h {minutes:02d}m. Nothing was scored or added to the leaderboard.")


def select_final(root: Path, name: str, run_ids: list[str]) -> Rules:
    """Pick the final submissions (at most two, each a scored run) and so reveal the private scores."""
    rules = read_rules(root)
    if not 1 <= len(run_ids) <= MAX_SELECTED:
        raise SubmissionLimitError(f"{name}: pick 1 or {MAX_SELECTED} final submissions, not {len(run_ids)}")
    scored = {r["run"] for r in read_ledger(root)}
    unknown = [r for r in run_ids if r not in scored]
    if unknown:
        raise SubmissionLimitError(f"{name}: {', '.join(unknown)} is not a scored submission of this competition; "
                                   f"scored: {', '.join(sorted(scored)) or 'none'}")
    if rules.selected:
        raise SubmissionLimitError(f"{name}: final submissions were already picked: {', '.join(rules.selected)}")
    rules = Rules(rules.daily_limit, rules.sealed, tuple(run_ids))
    write_rules(root, rules)
    return rules


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
    """Every scored submission ranked by private score, with its public rank and the shake-up
    (how many places it moved: positive is up). Final picks are marked."""
    metric = get_metric(read_prepared(Path(root) / "public").metric)
    return shake_up_view(read_ledger(root), metric.higher_is_better, read_rules(root).selected)


def format_private_leaderboard(name: str, rows: list[dict]) -> str:
    lines = [f"private leaderboard of {name} (ranked by private score; shake-up: places moved from the public rank)",
             f"{'rank':>4}  {'private':>7}  {'public':>7}  {'public rank':>11}  {'shake-up':>8}  run"]
    for r in rows:
        move = f"{r['shake_up']:+d}" if r["shake_up"] else "0"
        lines.append(f"{r['rank']:>4}  {r['private']:.4f}  {r['public']:.4f}  {r['public_rank']:>11}  {move:>8}  "
                     f"{r['run']}{'  <- final' if r['final'] else ''}")
    best = min((r for r in rows if r["final"]), key=lambda r: r["rank"], default=None)
    if best is not None:
        lines.append(f"final score: {best['private']:.4f} private ({best['run']}, the better of the final picks)")
    return "\n".join(lines)
