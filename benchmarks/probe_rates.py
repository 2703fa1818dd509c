"""A plan's rates for variants of a model: the run's own probe (`measure.measure_rates`), arms taking turns.

    python -m benchmarks.probe_rates [--competition mnist-5k] [--model fastnet] [--threads 0] [--repeats 3]
        [--arms "pool before batch norm (default)" "pool after batch norm"]

Each arm is a `model_kwargs` change to `run`'s default config for `--model`; every repeat probes every
arm once, in turn, so drift on a shared VM falls on all of them alike. Reported per arm: the median and
min-max of the training and predicting rates the planner would read, and each arm's median training rate
over the first arm's. The probe trains throwaway members on the labelled images only.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from competition.fitting.measure import measure_rates
from competition.config import RunConfig
from competition.fitting.policy import resolve_for
from competition.fitting.device import precision_for, training_device

from .common import add_output_flag, command, public_data, write_result

# name -> model_kwargs (fastnet's stages pool before their batch norm from 14 px across by default, §19)
ARMS: dict[str, dict] = {
    "pool before batch norm (default)": {},
    "pool after batch norm": {"pool_first": False},
}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="mnist-5k")
    parser.add_argument("--model", default="fastnet")
    parser.add_argument("--threads", type=int, default=0, help="as run's --threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12, help="batches in each probe epoch (a run's probe: 6)")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    add_output_flag(parser)
    args = parser.parse_args(argv)
    public, _ = public_data(args.competition)
    device = training_device()
    configs = {name: resolve_for(RunConfig(competition=args.competition, models=(args.model,), threads=args.threads,
                                           model_kwargs=ARMS[name]), public) for name in args.arms}
    measured: dict[str, list] = {name: [] for name in args.arms}
    for _ in range(args.repeats):
        for name, cfg in configs.items():
            measured[name].append(measure_rates(public, cfg, device, steps=args.steps))
    first = statistics.median(r.train for r in measured[args.arms[0]])
    rows = []
    for name, rates in measured.items():
        train, predict = [r.train for r in rates], [r.predict for r in rates]
        rows.append({"arm": name, "model": args.model, "precision": precision_for(configs[name], device),
                     "threads": torch.get_num_threads(), "train_img_s": round(statistics.median(train)),
                     "train_min_max": [round(min(train)), round(max(train))],
                     "predict_img_s": round(statistics.median(predict)),
                     "predict_min_max": [round(min(predict)), round(max(predict))],
                     "train_vs_first": round(statistics.median(train) / first, 3)})
    precision = rows[0]["precision"].replace("-true", "").replace("-mixed", "")
    write_result(f"probe_rates_{args.competition}_{args.model}_{precision}_threads{rows[0]['threads']}", rows,
                 {"command": command("probe_rates", argv)}, args.out)
    return rows


if __name__ == "__main__":
    main()
