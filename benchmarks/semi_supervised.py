"""Learning from the unlabelled test images: hard pseudo-labels against consistency training, on OOF.

    python -m benchmarks.semi_supervised [--competitions mnist-5k fashion-5k digits] [--levers ...]
                                         [--precision 32-true] [--epochs E]

Each lever is a `fit` of `run`'s default recipe (4 folds, its epochs) with one change, on every
competition named, with the same folds: its out-of-fold accuracy over all labelled images (exact 95%
interval), the rounds it ran and its wall time. The test answers are read nowhere here.
- hard pseudo-labels: today's default, a round of members from scratch on the confident test predictions;
- fixmatch: every step, the test images' weak-view predictions above the confidence rule are the
  targets of their strong view (twice the warps and a cutout square of a quarter side), beside the labelled loss;
- mean teacher: every step, an EMA of the student's weights gives soft targets on the weak view.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from competition.config import RunConfig
from competition.fitting.fit import fit

from .common import add_output_flag, command, print_table, public_data, write_result

LEVERS: dict[str, dict] = {
    "labelled only": {"pseudo_rounds": 0},
    "hard pseudo-labels (default)": {},
    "fixmatch": {"consistency": "fixmatch", "pseudo_rounds": 0},
    "mean teacher": {"consistency": "mean-teacher", "pseudo_rounds": 0},
    "fixmatch + pseudo round": {"consistency": "fixmatch"},
}
DEFAULT_LEVERS = ["labelled only", "hard pseudo-labels (default)", "fixmatch", "mean teacher"]


def measure(cfg: RunConfig, public_dir: Path) -> dict:
    start = time.perf_counter()
    result = fit(cfg, public_dir, Path(tempfile.mkdtemp(prefix="bench-semi-")), log=lambda s: None)
    wall = time.perf_counter() - start
    oof = result.final.oof
    return {"oof": oof.value, "oof_low": oof.low, "oof_high": oof.high, "labelled": oof.total,
            "round_oof": [round(r.oof.value, 4) for r in result.rounds], "chosen_round": result.chosen,
            "tta": result.final.tta, "members": sum(len(r.members) for r in result.rounds),
            "epochs_run": [m.epochs_run for r in result.rounds for m in r.members], "wall_s": wall}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competitions", nargs="+", default=["mnist-5k", "fashion-5k", "digits"])
    parser.add_argument("--levers", nargs="+", default=DEFAULT_LEVERS, choices=list(LEVERS))
    parser.add_argument("--precision", default="32-true", help="float32: the 2-core machines without bf16")
    parser.add_argument("--epochs", type=int, default=None, help="instead of run's default (for quick checks)")
    add_output_flag(parser)
    args = parser.parse_args(argv)
    rows = []
    for competition in args.competitions:
        found = []
        _, paths = public_data(competition)
        base = RunConfig(competition=competition, precision=args.precision,
                         **({"epochs": args.epochs} if args.epochs else {}))
        for name in args.levers:
            found.append({"competition": competition, "lever": name,
                          **measure(base.replace(**LEVERS[name]), paths.public)})
            print(found[-1], flush=True)
        # one file a competition, written as each finishes
        write_result(f"semi_supervised_{competition}", found, {"command": command("semi_supervised", argv)}, args.out)
        rows += found
    print_table([{k: v for k, v in r.items() if k != "epochs_run"} for r in rows])
    return rows


if __name__ == "__main__":
    main()
