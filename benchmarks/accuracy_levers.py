"""Accuracy levers, each measured on out-of-fold accuracy (never on test answers), side by side.

    python -m benchmarks.accuracy_levers [--competition mnist-5k] [--repeats 3] [--levers base ema ...]

Every variant is a `fit` of the same competition, repeated over `--repeats` fold seeds
(`split_seed` 0, 1, 2: different folds, different members), and reported as the mean OOF
accuracy over all labelled images with its min-max over repeats, the mean 95% interval width,
and the wall time. Some levers come free inside one fit and are read off it:
- TTA: every round's OOF accuracy with and without the test-time views;
- pseudo-label rounds: the OOF accuracy after each round of the `base` fit.
Test scores are printed nowhere here: choosing by them is what this harness exists to prevent.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from competition.config import WARPS, Augmentation, RunConfig
from competition.fitting.fit import fit
from competition.fitting.policy import resolve_for

from .common import add_output_flag, command, public_data, write_result

# name -> changes to the candidate default; every variant is compared with `base`
LEVERS: dict[str, dict] = {
    "base": {},
    "ema": {"averaging": "ema"},
    "elastic": {"augment": Augmentation(elastic=0.08)},
    "warps": {"augment": Augmentation(**WARPS)},          # seed 001's, the default before §17
    "shift only": {"augment": Augmentation(rotation=0.0, zoom=0.0, shear=0.0)},
    "2 seeds per fold": {"seeds": 2},
    "mixed fastnet+lenet5, greedy": {"models": ("fastnet", "lenet5"), "ensemble": "greedy"},
    "holdout 10%, 3 seeds (previous default)": {"folds": 1, "seeds": 3},
    # fewer folds train fewer members on less data: 3 x 15 epochs cost what 4 x 10 do (§18)
    "3 folds": {"folds": 3},
    "2 folds": {"folds": 2},
    # fastnet's first two stages pool after their batch norm and activation (before §19), or before
    # them at any map size (the default: from 14 px across)
    "pool after batch norm": {"model_kwargs": {"pool_first": False}},
    "pool before batch norm": {"model_kwargs": {"pool_first": True}},
    "bf16 autocast": {"precision": "bf16-mixed"},
    "float32": {"precision": "32-true"},
    # learning from the unlabelled test images (§13): hard pseudo-label rounds (base) against
    # consistency training every step, with and without a pseudo-label round after it
    "no pseudo round": {"pseudo_rounds": 0},
    "fixmatch": {"consistency": "fixmatch", "pseudo_rounds": 0},
    "mean teacher": {"consistency": "mean-teacher", "pseudo_rounds": 0},
    "fixmatch + pseudo round": {"consistency": "fixmatch"},
    "mean teacher + pseudo round": {"consistency": "mean-teacher"},
    # the pseudo round's members go on from round 0's member of their fold for a share of the epochs
    # (and of the peak learning rate) instead of training from scratch (§20)
    "warm round, a third of the epochs": {"pseudo_start": "warm", "warm_epochs": 0.34},
    "warm round, half the epochs": {"pseudo_start": "warm", "warm_epochs": 0.5},
    "warm round, a third of the epochs and rate": {"pseudo_start": "warm", "warm_epochs": 0.34, "warm_lr": 1 / 3},
}
# levers about the pseudo round itself: they keep `base`'s rounds and are reported as `base` is
ROUND_LEVERS = {name for name, changes in LEVERS.items() if "pseudo_start" in changes}


def measure(competition: str, public_dir: Path, changes: dict, base: RunConfig, repeat: int) -> dict:
    cfg = base.replace(competition=competition, split_seed=repeat, **changes)
    start = time.perf_counter()
    result = fit(cfg, public_dir, Path(tempfile.mkdtemp(prefix="bench-levers-")), log=lambda s: None)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "chosen_round": result.chosen,
            "rounds": [{"oof": r.oof.value, "oof_low": r.oof.low, "oof_high": r.oof.high, "oof_total": r.oof.total,
                        "oof_without_tta": r.oof_plain, "oof_with_tta": r.oof_tta, "tta": r.tta,
                        "pseudo": None if r.pseudo is None else len(r.pseudo.indices)} for r in result.rounds]}


def summarise(name: str, runs: list[dict], round_index: int | None = None, tta: bool | None = None) -> dict:
    """Mean and min-max over repeats of one lever (optionally one round of it, with or without TTA)."""
    def oof(run: dict) -> float:
        rnd = run["rounds"][run["chosen_round"] if round_index is None else min(round_index, len(run["rounds"]) - 1)]
        return {False: rnd["oof_without_tta"], True: rnd["oof_with_tta"], None: rnd["oof"]}[tta]

    values = [oof(r) for r in runs]
    rounds = [r["rounds"][r["chosen_round"]] for r in runs]
    return {"lever": name, "oof_mean": statistics.mean(values), "oof_min": min(values), "oof_max": max(values),
            "ci_width_mean": statistics.mean(r["oof_high"] - r["oof_low"] for r in rounds),
            "labelled": rounds[0]["oof_total"], "wall_s_mean": statistics.mean(r["wall_s"] for r in runs),
            "repeats": len(runs)}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="mnist-5k")
    parser.add_argument("--data", type=Path, default=None, help="a Kaggle-form folder (as `run --data`) instead")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    parser.add_argument("--epochs", type=int, default=None, help="instead of run's default (for quick checks)")
    parser.add_argument("--pseudo-rounds", type=int, default=None, help="of `base` (default: run's)")
    add_output_flag(parser)
    args = parser.parse_args(argv)
    public, paths = public_data(args.competition, folder=args.data)
    args.competition = paths.root.name
    base = RunConfig(competition=args.competition, tta="auto",
                     **({"epochs": args.epochs} if args.epochs else {}))
    base = resolve_for(base, public)      # run's `auto` choices
    pseudo_rounds = base.pseudo_rounds if args.pseudo_rounds is None else args.pseudo_rounds
    rows, raw = [], {}
    for name in args.levers:
        # only `base` and the round levers pay for pseudo-label rounds; the others are compared on round 0
        with_rounds = name == "base" or name in ROUND_LEVERS
        changes = {**LEVERS[name], "pseudo_rounds": pseudo_rounds if with_rounds else 0}
        raw[name] = [measure(args.competition, paths.public, changes, base, r) for r in range(args.repeats)]
        if with_rounds:
            rows.append(summarise(f"{name}, round 0, no TTA", raw[name], round_index=0, tta=False))
            rows.append(summarise(f"{name}, round 0, TTA", raw[name], round_index=0, tta=True))
            for k in range(1, pseudo_rounds + 1):
                rows.append(summarise(f"{name}, after pseudo round {k}", raw[name], round_index=k))
            rows.append(summarise(f"{name}, chosen round", raw[name]))
        else:
            rows.append(summarise(f"{name} (round 0)", raw[name], round_index=0))
        print(rows[-1])
    write_result(f"accuracy_levers_{args.competition}", rows,
                 {"command": command("accuracy_levers", argv), "base_config": base.to_dict(), "runs": raw},
                 args.out)
    return rows


if __name__ == "__main__":
    main()
