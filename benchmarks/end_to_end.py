"""Figure 3: wall time of `python -m competition run` and of each stage, plus peak memory.

    python -m benchmarks.end_to_end [-- any run flags, e.g. --competition mnist-5k]

Runs the real command in a fresh temporary root (so `prepare` is included) and reads the
stage times that the run writes into its metrics.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import add_output_flag, command, write_result
from competition.record import RunRecord


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_flag(parser)
    args, run_flags = parser.parse_known_args(argv)
    run_flags = [f for f in run_flags if f != "--"]
    root = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "competition", "--root", str(root), "run", *run_flags], check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    record = RunRecord.read(next(root.glob("submissions/*/metrics.json")).parent)
    rows = [{"stage": "prepare", "wall_s": record.stage_s.get("prepare", 0.0)}]
    for rnd in record.rounds:
        for member in rnd.members:
            rows.append({"stage": f"train {member.name}", "wall_s": member.wall_s})
        label = "ensemble" if rnd.round == 0 else "ensemble (pseudo round)"
        rows.append({"stage": f"round {rnd.round} {label} + selection", "wall_s": rnd.ensemble_s})
    rows.append({"stage": "publish (submission, score, leaderboard, report)",
                 "wall_s": record.wall_s - sum(record.stage_s.values())})
    rows.append({"stage": "total (process, incl. imports)", "wall_s": wall})
    scores = record.scores.get("submission")
    extra = {"command": command("end_to_end", argv), "peak_rss_mib": peak_mib,
             "public": None if scores is None else scores.public.value,
             "private": None if scores is None or scores.private is None else scores.private.value,
             "cv": record.oof.value, "cv_kind": record.cv_kind}
    write_result("end_to_end", rows, extra, args.out)
    print(f"total {wall:.1f}s, peak RSS {peak_mib:.0f} MiB, public {extra['public']}, private {extra['private']}")
    return extra


if __name__ == "__main__":
    main()
