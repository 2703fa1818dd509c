"""Figure 2: wall time until the default model's validation accuracy first reaches a target.

    python -m benchmarks.time_to_accuracy [--competition mnist-5k --target 0.99] [--seeds 3]
    python -m benchmarks.time_to_accuracy --competition fashion-mnist --target 0.91

Median over seeds with the min-max spread; a seed that never reaches the target is reported as such.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from competition.train import train_seed

from .common import add_output_flag, command, training_data, write_result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="mnist-5k")
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--val-fraction", type=float, default=0.25)
    add_output_flag(parser)
    args = parser.parse_args(argv)
    cfg, data = training_data(args.competition, val_fraction=args.val_fraction, patience=1000, epochs=args.epochs)
    rows = []
    for seed in range(args.seeds):
        result = train_seed(data, cfg, seed, tempfile.mkdtemp(prefix="bench-tta-"))
        hit = next((h for h in result.history if h["val_acc"] >= args.target), None)
        rows.append({"seed": seed, "time_to_target_s": hit["elapsed_s"] if hit else None,
                     "epoch": hit["epoch"] if hit else None, "best_val_acc": result.val_acc,
                     "total_s": result.history[-1]["elapsed_s"]})
    times = [r["time_to_target_s"] for r in rows if r["time_to_target_s"] is not None]
    summary = {"median_s": statistics.median(times) if times else None, "min_s": min(times, default=None),
               "max_s": max(times, default=None), "reached": f"{len(times)}/{len(rows)}"}
    write_result(f"time_to_accuracy_{args.competition}", rows,
                 {"command": command("time_to_accuracy", argv), "target": args.target, "model": cfg.model,
                  "epochs": cfg.epochs, "val_size": len(data.val_labels), **summary}, args.out)
    print(f"target {args.target}: reached by {summary['reached']} seeds; median {summary['median_s']} s "
          f"(min {summary['min_s']}, max {summary['max_s']})")
    return summary


if __name__ == "__main__":
    main()
