"""Each round of finished runs, its ensemble alone and with the earlier rounds' members, out of fold.

    python -m benchmarks.pooled_rounds RUN_DIR [RUN_DIR ...] [--out DIR] [--name NAME]

No member is retrained or predicts anything new: the rounds' ensembles are made again from the
members' cached logits by the harness's own `ensemble_round` and `with_earlier_members`, with the
run's config, so a run made before the pooling existed shows what it would have chosen. Beside each
round: the submission's round and score without pooling and with it. The test answers are never read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

from competition.config import RunConfig
from competition.fitting.data import load_public
from competition.fitting.executors import InProcess
from competition.fitting.fit import best_round, ensemble_round, with_earlier_members
from competition.fitting.members import MemberResult, load_member_result
from competition.grading.metrics import get_metric

from .common import add_output_flag, command, write_result


def round_members(run_dir: Path) -> list[list[MemberResult]]:
    """Each round's finished members, in round order."""
    rounds = sorted((d for d in run_dir.glob("round*") if d.name[5:].isdigit()), key=lambda d: int(d.name[5:]))
    found = [[load_member_result(m) for m in sorted(d.iterdir()) if (m / "result.json").is_file()] for d in rounds]
    return [members for members in found if members]


def replay(run_dir: Path) -> list[dict]:
    """One row a round: its OOF score alone, with the earlier members, and the choice."""
    cfg = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    public = load_public(Path(json.loads((run_dir / "run.json").read_text())["competition_dir"]) / "public")
    metric = get_metric(public.competition.metric)
    common = dict(labels=public.train_labels, num_classes=public.num_classes, executor=InProcess(), public=public,
                  metric=metric)
    rows, alone, chosen, use_tta, earlier = [], [], [], None, []
    for number, members in enumerate(round_members(run_dir)):
        ens = ensemble_round(cfg, number, members, use_tta=use_tta, log=lambda line: None, **common)
        use_tta = ens.tta
        pooled = with_earlier_members(cfg, number, ens, earlier, log=lambda line: None, **common) if earlier else ens
        alone.append(ens.cv)
        chosen.append(pooled.cv)
        rows.append({"run": run_dir.name, "competition": public.name, "models": "+".join(cfg.member_models),
                     "epochs": cfg.epochs, "seeds": cfg.seeds, "split_seed": cfg.split_seed, "patience": cfg.patience,
                     "model_kwargs": cfg.model_kwargs, "round": number, "alone": ens.cv.value,
                     "with_earlier": None if not earlier else pooled.cv.value,
                     "takes_earlier": len(pooled.ensembled) > len(members)})
        earlier += members
    for key, scores in (("submission_without", alone), ("submission_with", chosen)):
        best = best_round_of(scores, metric)
        rows[-1][key] = f"round {best}: {scores[best].value:.4f}"
    return rows


def best_round_of(scores: list, metric) -> int:
    """The round the submission takes, by the harness's rule (`best_round`), from each round's score."""
    return best_round([SimpleNamespace(cv=cv) for cv in scores], metric)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--name", default="pooled_rounds", help="the result's file name, without .json")
    add_output_flag(parser)
    args = parser.parse_args(argv)
    rows = [row for run_dir in args.run_dirs for row in replay(run_dir)]
    write_result(args.name, rows, {"command": command("pooled_rounds", argv)}, args.out)
    return rows


if __name__ == "__main__":
    main()
