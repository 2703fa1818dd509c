"""Members per minute: in-process against local Ray with 1 and 2 workers, side by side in one run.

    python -m benchmarks.scaling [--competition mnist-5k] [--members 4] [--epochs 3] [--workers 1 2]

The same member specs (one round of `--members` folds) are trained by each executor into fresh
folders. Start-up (starting a local Ray) is timed apart from the members. On a machine with C
cores, N workers each get C/N torch threads, so the cores are shared, not oversubscribed: what
can scale is the part of a member that does not use both cores well (Python and Lightning
overhead, small kernels, prediction).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from competition.config import RunConfig
from competition.fitting.policy import resolve_for
from competition.fitting.executors import Executor, InProcess, RayExecutor
from competition.fitting.members import plan_members, train_member

from .common import add_output_flag, command, public_data, write_result


def time_members(executor: Executor, cfg: RunConfig, public, public_dir: Path) -> float:
    specs = plan_members(cfg, 0, public_dir, Path(tempfile.mkdtemp(prefix="bench-scaling-")))
    start = time.perf_counter()
    executor.map(train_member, specs, public=public)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="mnist-5k")
    parser.add_argument("--members", type=int, default=4, help="folds of one round")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    add_output_flag(parser)
    args = parser.parse_args(argv)
    public, paths = public_data(args.competition)
    cfg = resolve_for(RunConfig(competition=args.competition, folds=args.members, epochs=args.epochs, pseudo_rounds=0),
                      public)
    rows = []
    wall = time_members(InProcess(), cfg, public, paths.public)
    rows.append({"executor": "in-process", "startup_s": 0.0, "members": args.members, "members_wall_s": wall,
                 "members_per_min": 60 * args.members / wall})
    import ray
    for workers in args.workers:
        start = time.perf_counter()
        executor = RayExecutor(workers=workers)
        startup = time.perf_counter() - start
        wall = time_members(executor, cfg, public, paths.public)
        rows.append({"executor": executor.name, "startup_s": startup, "members": args.members,
                     "members_wall_s": wall, "members_per_min": 60 * args.members / wall})
        ray.shutdown()
    base = rows[0]["members_per_min"]
    for row in rows:
        row["vs_in_process"] = row["members_per_min"] / base
    write_result(f"scaling_{args.competition}_epochs{args.epochs}", rows,
                 {"command": command("scaling", argv), "epochs": args.epochs, "competition": args.competition},
                 args.out)
    return rows


if __name__ == "__main__":
    main()
