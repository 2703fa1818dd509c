"""The harness from Python, as a notebook uses it: `prepare`, `run`, `score` (and `fit`, the run without
publishing). Each takes what the command line takes, as keyword arguments, and returns a record:

    import competition
    result = competition.run("digits", root="work", folds=2, epochs=3, time_limit="none")
    result.cv, result.public, result.private     # Estimates: value, low, high
    result.submission, result.report             # paths

The harness's lines go through the `logging` module (the logger "competition"): call
`logging.basicConfig(level=logging.INFO, format="%(message)s")` to see them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .config import build_config
from .fitting.executors import make_executor
from .fitting.fit import FitResult, fit as fit_public
from .grading.scoring import Graded, Row, grade_and_record
from .pipeline import RunResult, run as run_pipeline
from .prepared import PreparedCompetition, read_prepared
from .preparing.prepare import SplitOptions, ensure_prepared
from .workspace import Workspace

LOG = logging.getLogger("competition")


def _split(split_seed: int, test_fraction: float, public_fraction: float) -> SplitOptions:
    return SplitOptions(split_seed=split_seed, test_fraction=test_fraction, public_fraction=public_fraction)


def prepare(competition: str = "mnist-5k", *, data: str | Path | None = None, root: str | Path = ".",
            metric: str | None = None, split_seed: int = 0, test_fraction: float = 0.2,
            public_fraction: float = 0.3) -> PreparedCompetition:
    """Prepare a registered competition (or a Kaggle-form `data` folder) under `root`/data: its
    description (classes, sizes, metric, submission form); prepared once, reused after."""
    workspace = Workspace(Path(root).resolve())
    paths = ensure_prepared(workspace, "" if data else competition, Path(data) if data else None,
                            _split(split_seed, test_fraction, public_fraction), LOG.info, metric)
    return read_prepared(paths.public)


def run(competition: str = "mnist-5k", *, data: str | Path | None = None, root: str | Path = ".",
        metric: str | None = None, config: str | Path | None = None, workers: int | None = None,
        split_seed: int = 0, test_fraction: float = 0.2, public_fraction: float = 0.3,
        **settings: Any) -> RunResult:
    """Play a competition end to end, as `python -m competition run` does: `settings` are RunConfig
    fields (`models=("fastnet",)`, `folds=5`, `time_limit="10m"`); those given are kept by a time
    limit's plan, the rest it may change. Returns the run: `.cv`, `.public`, `.private`, `.record`,
    `.submission`, `.report`."""
    cfg = build_config(Path(config) if config else None, **settings)
    given = frozenset(settings) | (frozenset(build_config(Path(config)).to_dict()) if config else frozenset())
    if not data:
        cfg = cfg.replace(competition=competition)
    return run_pipeline(cfg, Workspace(Path(root).resolve()), Path(data) if data else None,
                        split=_split(split_seed, test_fraction, public_fraction),
                        executor=make_executor(workers, None, None), log=LOG.info, metric=metric,
                        given=given | {"competition"})


def fit(competition: str = "mnist-5k", *, data: str | Path | None = None, root: str | Path = ".",
        run_dir: str | Path, **settings: Any) -> FitResult:
    """Train a competition's members and their ensemble on its public folder, into `run_dir`, without
    a submission, a grade or a leaderboard row (a search, a benchmark). No time limit is planned."""
    paths = Workspace(Path(root).resolve()).competition(competition)
    if data or not (paths.public / "competition.json").is_file():
        prepared = prepare(competition, data=data, root=root)
        paths = Workspace(Path(root).resolve()).competition(prepared.name)
    cfg = build_config(**{"time_limit": "none", **settings}).replace(competition=paths.root.name)
    return fit_public(cfg, paths.public, Path(run_dir), log=LOG.info)


def score(submission: str | Path, *, competition: str = "mnist-5k", data: str | Path | None = None,
          root: str | Path = ".", leaderboard: bool = True) -> Graded:
    """Grade a submission file as `python -m competition score` does, under the competition's rules
    (its daily limit): `.score` (public and private, each with its interval), `.sealed` (the private
    score is not to be shown yet), `.rank` on leaderboard.md (where `leaderboard`)."""
    workspace = Workspace(Path(root).resolve())
    paths = ensure_prepared(workspace, "" if data else competition, Path(data) if data else None, SplitOptions(),
                            LOG.info)
    name = Path(submission).name
    return grade_and_record(Path(submission), paths, Row(submission_id=name, run=name),
                            workspace.leaderboard if leaderboard else None)
