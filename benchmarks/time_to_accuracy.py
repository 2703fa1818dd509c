"""Figure 2: wall time until the default model's validation accuracy first reaches each target.

    python -m benchmarks.time_to_accuracy [--competition mnist-5k --target 0.985 0.99] [--seeds 3]
    python -m benchmarks.time_to_accuracy --competition fashion-mnist --target 0.90 0.91
    python -m benchmarks.time_to_accuracy --batch-size 256 --lr 6e-3     # a recipe change, checked

Median over seeds with the min-max spread, per target; a seed that never reaches a target is
reported as such. Validation is checked once per epoch, so a time is that of the epoch's end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from competition.fitting.train import train_model

from .common import add_output_flag, command, training_data, write_result


def first_hit(history: list[dict], target: float) -> dict | None:
    """The first epoch whose validation accuracy reaches target, or None."""
    return next((h for h in history if h["val_acc"] >= target), None)


def spread(times: list[float], seeds: int) -> dict:
    return {"median_s": statistics.median(times) if times else None, "min_s": min(times, default=None),
            "max_s": max(times, default=None), "reached": f"{len(times)}/{seeds}"}


def main(argv: list[str] | None = None) -> dict[float, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="mnist-5k")
    parser.add_argument("--target", type=float, nargs="+", default=[0.985, 0.99])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=None, help="instead of run's default")
    parser.add_argument("--lr", type=float, default=None, help="instead of run's default")
    add_output_flag(parser)
    args = parser.parse_args(argv)
    cfg, data = training_data(args.competition, val_fraction=args.val_fraction, patience=1000, epochs=args.epochs,
                              batch_size=args.batch_size, lr=args.lr)
    rows = []
    for seed in range(args.seeds):
        result = train_model(data, cfg, cfg.models[0], seed, tempfile.mkdtemp(prefix="bench-tta-"))
        best_val_acc = max(h["val_acc"] for h in result.history)
        row = {"seed": seed, "best_val_acc": best_val_acc, "total_s": result.history[-1]["elapsed_s"]}
        for target in args.target:
            hit = first_hit(result.history, target)
            row[f"s_to_{target}"] = hit["elapsed_s"] if hit else None
            row[f"epoch_to_{target}"] = hit["epoch"] if hit else None
        rows.append(row)
    summary = {target: spread([r[f"s_to_{target}"] for r in rows if r[f"s_to_{target}"] is not None], len(rows))
               for target in args.target}
    name = f"time_to_accuracy_{args.competition}"
    if args.batch_size is not None or args.lr is not None:         # a variant keeps its own file
        name += f"_batch{cfg.batch_size}_lr{cfg.lr:g}"
    write_result(name, rows,
                 {"command": command("time_to_accuracy", argv), "model": cfg.models[0], "epochs": cfg.epochs,
                  "batch_size": cfg.batch_size, "lr": cfg.lr,
                  "val_size": len(data.val_labels), "train_size": len(data.train_labels),
                  "targets": {str(t): s for t, s in summary.items()}}, args.out)
    for target, s in summary.items():
        print(f"target {target}: reached by {s['reached']} seeds; median {s['median_s']} s "
              f"(min {s['min_s']}, max {s['max_s']})")
    return summary


if __name__ == "__main__":
    main()
