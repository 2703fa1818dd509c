"""Shared by the benchmarks: the machine, the data, and writing a result table as JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import sys
import tempfile
from pathlib import Path

import torch

from competition.config import RunConfig
from competition.fitting.data import PublicData, load_public
from competition.preparing.prepare import prepare, prepare_kaggle_folder
from competition.workspace import CompetitionPaths
from competition.fitting.members import fold_data
from competition.fitting.policy import resolve_for
from competition.fitting.train import TrainingData
from competition.fitting.device import training_device
from competition.prepared import is_prepared

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or "?"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = found.group(1).strip() if found else cpu
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def public_data(competition: str, root: Path | None = None, folder: Path | None = None
                ) -> tuple[PublicData, CompetitionPaths]:
    """A prepared competition's public data (prepared into root/data, or a temporary folder): a
    registry competition, or the Kaggle-form `folder` (`run --data`'s) as `run` prepares it."""
    data_dir = (root or Path(tempfile.mkdtemp(prefix="bench-"))) / "data"
    if folder is not None:
        paths = prepare_kaggle_folder(folder, data_dir, log=lambda s: None)
        return load_public(paths.public), paths
    paths = CompetitionPaths(data_dir / competition)
    if not is_prepared(paths):
        paths = prepare(competition, data_dir, log=lambda s: None)
    return load_public(paths.public), paths


def training_data(competition: str, **overrides) -> tuple[RunConfig, TrainingData]:
    """`run`'s default config (overrides given as None change nothing; `model` names the one
    model) on a single stratified holdout of `val_fraction`, resident on the training device."""
    public, _ = public_data(competition)
    values = {k: v for k, v in overrides.items() if v is not None}
    if "model" in values:
        values["models"] = (values.pop("model"),)
    cfg = resolve_for(RunConfig(competition=competition, **{"folds": 1, **values}), public)        # run's `auto` choices
    data, _ = fold_data(public, cfg, 0, training_device())
    return cfg, data


def print_table(rows: list[dict]) -> None:
    keys = list(rows[0])
    cells = [[_fmt(row.get(k)) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def finished_run_args(description: str, argv: list[str] | None) -> tuple[argparse.ArgumentParser,
                                                                         argparse.Namespace, PublicData]:
    """The arguments of a benchmark that reads a finished run (RUN_DIR [--round R] [--out DIR]), and the
    public data of the competition it played (as its run.json names it)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--round", type=int, default=0)
    add_output_flag(parser)
    args = parser.parse_args(argv)
    record = json.loads((args.run_dir / "run.json").read_text())
    return parser, args, load_public(Path(record["competition_dir"]) / "public")


def write_run_result(benchmark: str, public: PublicData, rows: list[dict], argv: list[str] | None,
                     args: argparse.Namespace, member_names: list[str]) -> Path:
    """`write_result` for a benchmark of `finished_run_args`: the run, round and members beside the rows."""
    return write_result(f"{benchmark}_{public.name}", rows,
                        {"command": command(benchmark, argv), "run": args.run_dir.name, "round": args.round,
                         "members": member_names}, args.out)


def write_result(name: str, rows: list[dict], extra: dict | None = None, out_dir: Path | None = None) -> Path:
    """Print the table and write {machine, rows, ...} to results/<name>.json."""
    print_table(rows)
    out_dir = out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), "rows": rows, **(extra or {})},
                               indent=2) + "\n")
    print(f"-> {path}")
    return path


def command(name: str, argv: list[str] | None) -> str:
    """The command line that reproduces a result, quoted for a shell (lever names hold spaces)."""
    return f"python -m benchmarks.{name} " + shlex.join(sys.argv[1:] if argv is None else argv)


def add_output_flag(parser) -> None:
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
