"""Averaging logits or probabilities, compared on out-of-fold scores, from a finished run with seeds >= 2.

    python -m competition run --competition digits --seeds 2 --pseudo-rounds 0
    python -m benchmarks.ensemble_average RUN_DIR [--round 0]

No member is retrained or re-predicted: each member's cached validation logits (plain view) are
averaged, over the members that validated a row, as logits or as probabilities, and the OOF rows
are scored by accuracy, log-loss (at a softmax temperature fitted on the same OOF logits, as a run
does) and, column-wise, ROC AUC. With one seed each row has one member, and the two are the same,
so the comparison needs `--seeds 2` or more. The test answers are never read.
"""

from __future__ import annotations

from competition.fitting.ensemble import OutOfFold
from competition.fitting.fit import grouped_oof
from competition.fitting.members import load_member_result
from competition.grading.metrics import get_metric
from competition.fitting.predict import IDENTITY

from .common import finished_run_args, write_run_result

METRICS = ("accuracy", "log-loss", "mean-roc-auc")


def main(argv: list[str] | None = None) -> list[dict]:
    parser, args, public = finished_run_args(__doc__.splitlines()[0], argv)
    members = [load_member_result(p) for p in sorted((args.run_dir / f"round{args.round}").iterdir())
               if (p / "result.json").is_file()]
    if len(members) <= len({m.fold for m in members}):
        parser.error("every fold has one member: logits and probabilities average alike; run with --seeds 2")
    models = tuple(dict.fromkeys(m.model for m in members))
    rows = []
    for method in ("logits", "probs"):
        groups = grouped_oof(members, IDENTITY, len(public.train_labels), public.num_classes, models, method)
        oof = OutOfFold(logits=groups.mean(0), labels=public.train_labels)
        temperature = oof.fit_temperature()
        row = {"average": method, "temperature": round(temperature, 3)}
        for name in METRICS:
            metric = get_metric(name)
            estimate = oof.score(metric, temperature if metric.needs_probabilities else 1.0)
            row[name] = round(estimate.value, 5)
            row[f"{name}_ci"] = [round(estimate.low, 5), round(estimate.high, 5)]
        rows.append(row)
    write_run_result("ensemble_average", public, rows, argv, args, [m.name for m in members])
    return rows


if __name__ == "__main__":
    main()
