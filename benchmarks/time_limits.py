"""Runs given 1, 3 and 10 minutes: the plan each makes, whether it keeps its limit, and what it buys on OOF.

    python -m benchmarks.time_limits [--competition mnist-5k | --data DIR] [--limits 1m 3m 10m] [--precision auto]
                                     [--threads N]

Each limit is a whole `run` (prepare, rate probe, plan, fit, publish) in a fresh workspace, timed
from the call to the end of publishing. The OOF score is what the limit's choices are judged by;
the public and private scores are printed after the fact and chose nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from competition.config import RunConfig
from competition.pipeline import run
from competition.workspace import Workspace

from .common import add_output_flag, command, print_table, write_result


def measure(competition: str, limit: str, precision: str, threads: int = 0, data: Path | None = None) -> dict:
    workspace = Workspace(Path(tempfile.mkdtemp(prefix="bench-limit-")))
    start = time.perf_counter()
    result = run(RunConfig(competition=competition, time_limit=limit, precision=precision, threads=threads),
                 workspace, data, log=lambda s: None)
    wall = time.perf_counter() - start
    plan = json.loads((result.run_dir / "run.json").read_text())["plan"]
    cv, score = result.fit.final.cv, result.published.scores["submission"]
    members = [m for r in result.fit.rounds for m in r.members]
    return {"limit": limit, "limit_s": plan["limit_s"], "wall_s": wall, "inside": wall <= plan["limit_s"],
            "estimate_s": plan["estimate_s"], **plan["recipe"], "rounds_run": len(result.fit.rounds),
            "cut_members": sum(m.out_of_time for m in members), "train_img_s": plan["rates"]["train"],
            "precision": plan["rates"]["precision"], "oof": cv.value, "oof_low": cv.low, "oof_high": cv.high,
            "public": score.public.value, "private": score.private.value}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--competition", default="mnist-5k")
    target.add_argument("--data", type=Path, help="a Kaggle-form folder (named after the folder)")
    parser.add_argument("--limits", nargs="+", default=["1m", "3m", "10m"])
    parser.add_argument("--precision", default="auto", help="auto, or 32-true to measure the float32 path")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the run's default); 1 on a "
                        "2-core CPU trains at about half the rate, a slower machine's")
    add_output_flag(parser)
    args = parser.parse_args(argv)
    name = args.data.name if args.data else args.competition
    rows = []
    for limit in args.limits:
        rows.append({"competition": name, **measure(name, limit, args.precision, args.threads, args.data)})
        print(rows[-1], flush=True)
    print_table(rows)
    suffix = ("" if args.precision == "auto" else f"_{args.precision}") + \
        (f"_threads{args.threads}" if args.threads else "")
    write_result(f"time_limits_{name}{suffix}", rows, {"command": command("time_limits", argv)}, args.out)
    return rows


if __name__ == "__main__":
    main()
