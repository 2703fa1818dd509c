"""The time limit's rate probe beside busy processes: the rate it reads and the CPU share it reports.

    python -m benchmarks.contention [--competition mnist-5k] [--beside 0 1 2] [--repeats 2] [--threads N]

For each count, that many Python processes spin (`while True: pass`) while `measure.measure_rates`
probes `run`'s default model; the row gives the training rate the plan would use and the share of
its threads' CPU time the timed epoch got (the plan line warns below `plan.CONTENDED`).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
from collections.abc import Iterator

import torch

from competition.fitting import measure, plan
from competition.config import RunConfig
from competition.fitting.policy import resolve_for
from competition.fitting.device import training_device

from .common import add_output_flag, command, print_table, public_data, write_result

SPIN = "while True: pass"


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    spinning = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(count)]
    try:
        yield
    finally:
        for process in spinning:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="mnist-5k")
    parser.add_argument("--beside", type=int, nargs="+", default=[0, 1, 2], help="busy processes beside the probe")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch CPU threads (run's --threads); default the run's own")
    add_output_flag(parser)
    args = parser.parse_args(argv)
    public, _ = public_data(args.competition)
    cfg = resolve_for(RunConfig(competition=args.competition, threads=args.threads or 0), public)
    device = training_device()
    rows = []
    for count in args.beside:
        with busy_processes(count):
            for repeat in range(args.repeats):
                rates = measure.measure_rates(public, cfg, device)
                rows.append({"beside": count, "repeat": repeat, "threads": torch.get_num_threads(),
                             "model": cfg.models[0], "precision": rates.precision,
                             "train_img_s": round(rates.train, 1), "predict_img_s": round(rates.predict, 1),
                             "cpu_share": None if rates.cpu_share is None else round(rates.cpu_share, 3),
                             "warns": rates.contended})
                print(rows[-1], flush=True)
    print_table(rows)
    suffix = f"_threads{args.threads}" if args.threads else ""
    write_result(f"contention_{args.competition}{suffix}", rows, {"command": command("contention", argv)}, args.out)
    return rows


if __name__ == "__main__":
    main()
