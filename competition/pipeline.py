"""`python -m competition run`: prepare, then fit, then publish.

prepare -> fit (rounds of members -> out-of-fold score, ensemble, pseudo-labels) -> publish
(submission.csv -> grade against the held-out answers -> leaderboard row -> metrics, report).

`fit` gets the public folder only. The answers are read by `publish`, after the last
prediction is made, to grade; nothing read from them goes back into training.
"""

from __future__ import annotations

import logging

import dataclasses
import hashlib
import json
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from .version import __version__
from .fitting import policy
from .config import RunConfig
from .errors import RunStateError
from .fitting.executors import Executor
from .fitting.fit import FitResult, fit
from .preparing.prepare import SplitOptions, ensure_prepared
from .workspace import CompetitionPaths, Workspace
from .fitting import measure, plan
from .fitting.data import load_public
from .fitting.predict import tta_views
from .fitting.models import AUTO, model_slug
from .fitting.device import training_device
from .grading.metrics import Estimate
from .publish import Published, publish
from .record import RunRecord
from .grading.rules import check_local_limit
from .workspace import atomic_write_text, format_duration
from .fitting.stopping import StopRequested, stop_on_signals
from .fitting import stopping
from .prepared import is_prepared, read_prepared

LOG = logging.getLogger("competition")


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """What `run` returns: the fit, what publishing measured, and the run's record."""
    fit: FitResult
    published: Published
    wall_s: float

    @property
    def run_dir(self) -> Path:
        return self.fit.run_dir

    @property
    def record(self) -> RunRecord:
        return self.published.record

    @property
    def cv(self) -> Estimate:
        """The out-of-fold score in the competition's metric, with its 95% interval: the one to trust."""
        return self.record.cv

    @property
    def public(self) -> Estimate | None:
        score = self.record.scores.get("submission")
        return None if score is None else score.public

    @property
    def private(self) -> Estimate | None:
        """None while the competition is sealed, or without answers."""
        score = self.record.scores.get("submission")
        return None if score is None else score.private

    @property
    def submission(self) -> Path:
        return self.run_dir / "submission.csv"

    @property
    def report(self) -> Path:
        return self.run_dir / "report.html"


def new_run_dir(workspace: Workspace, cfg: RunConfig) -> Path:
    """A fresh folder submissions/<UTC time>-<competition>-<model>[-N]: made atomically, so two
    runs started in the same second get two folders."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{cfg.competition}-{'+'.join(model_slug(m) for m in cfg.models)}"
    workspace.submissions.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        run_dir = workspace.submissions / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise RunStateError(f"{workspace.submissions}: could not make a new run folder for {base}")


PACKAGE = Path(__file__).resolve().parent


def code_fingerprint() -> str:
    """A short hash of the package's source: a resumed run's new members must come from the same code."""
    digest = hashlib.sha256()
    for source in sorted(PACKAGE.rglob("*.py")):
        digest.update(source.relative_to(PACKAGE).as_posix().encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:16]


def git_commit() -> str | None:
    """The commit the code was checked out at, when it is a git checkout (recorded, for the reader)."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def run_record(paths: CompetitionPaths) -> dict:
    """What a run must match to be resumed: the split its members trained on and the code."""
    return {"fingerprint": read_prepared(paths.public).fingerprint, "version": __version__,
            "code": code_fingerprint(), "git_commit": git_commit(), "competition_dir": str(paths.root)}


def open_resumed_run(workspace: Workspace, run_id: str) -> tuple[Path, RunConfig, CompetitionPaths]:
    """An interrupted run's folder, config and competition, checked against the data as it is now."""
    run_dir = workspace.submissions / run_id
    if not (run_dir / "config.json").is_file() or not (run_dir / "run.json").is_file():
        raise RunStateError(f"{run_dir}: no config.json and run.json, so there is no run {run_id!r} to resume")
    cfg = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()), source=str(run_dir / "config.json"))
    record = json.loads((run_dir / "run.json").read_text())
    paths = CompetitionPaths(Path(record["competition_dir"]))
    if not is_prepared(paths):
        raise RunStateError(f"{paths.root}: the competition run {run_id!r} trained on is no longer prepared")
    now = run_record(paths)
    if now["fingerprint"] != record["fingerprint"]:
        raise RunStateError(f"{paths.root} was prepared again with another split since run {run_id!r} started "
                            f"(fingerprint {now['fingerprint']} != {record['fingerprint']}); start a new run instead")
    if (now["version"], now["code"]) != (record["version"], record.get("code")):
        raise RunStateError(f"run {run_id!r} was made by other code (competition {record['version']}, source "
                            f"{record.get('code')}, commit {record.get('git_commit')}; now {now['version']}, "
                            f"{now['code']}, {now['git_commit']}): its finished members may not match new ones; "
                            f"start a new run instead")
    return run_dir, cfg, paths


def plan_to_time_limit(cfg: RunConfig, paths: CompetitionPaths, free: frozenset[str], start: float,
                       log: Callable[[str], None], cheaper: Sequence[Callable[[], RunConfig]] = ()
                       ) -> tuple[plan.Plan | None, float | None]:
    """The recipe planned to fit the time limit, and the deadline (a `time.time()`) training keeps to;
    (None, None) for a fixed recipe (`time_limit = "none"`). The limit counts from `start`, the run's.
    `cheaper`: `cfg` resolved for the cheaper backbones at hand, in order (policy.BACKBONES): where
    `cfg`'s probe does not fit the limit at full folds, the first of them whose probe does is planned
    instead (the last one is planned whatever it fits)."""
    info = read_prepared(paths.public)
    limit = plan.budget_seconds(cfg, info.train_size)
    if limit is None:
        return None, None
    public = load_public(paths.public)
    device = training_device()
    views = len(tta_views(cfg.augment.hflip == "on"))
    prefix = (f"time limit {format_duration(limit)}"
              + (" (auto: by the labelled count)" if cfg.time_limit == "auto" else ""))
    full_folds = int(cfg.folds) if "folds" not in free else max(t.folds for t in plan.PRETRAINED_TIERS)

    def planned_for(cfg: RunConfig) -> plan.Plan:
        wider = policy.wider_models(cfg.models)

        def wider_rates() -> plan.Rates:
            log(f"measuring {'+'.join(wider)} too: the time may buy the wider net")
            return measure.measure_rates(public, cfg.replace(models=wider), device)

        training_rates = None
        if cfg.fine_tuning and cfg.probe != "off":
            # the probe's rates first: a fine-tune is measured only where one could fit at all
            log(f"{prefix}: measuring the features of {cfg.models[0]} at {cfg.input_size} px on this {device.type}")
            rates = measure.measure_probe(public, cfg, device)

            def training_rates() -> plan.Rates:
                log(f"measuring a fine-tune of {cfg.models[0]} too: the time may afford one")
                measured = measure.measure_rates(public, cfg, device)
                return dataclasses.replace(measured, features=rates.features, probe_fit_s=rates.probe_fit_s)
        else:
            log(f"{prefix}: measuring {cfg.models[0]} on this {device.type}")
            rates = measure.measure_rates(public, cfg, device)
        return plan.plan(cfg, rates, limit_s=limit, budget_s=limit - (time.perf_counter() - start),
                         labelled=info.train_size, test=info.test_size, views=views,
                         large_data=info.train_size >= policy.LARGE_DATA, free=free, wider=wider,
                         wider_rates=wider_rates, training_rates=training_rates)

    planned = planned_for(cfg)
    for next_cfg in cheaper:
        if planned.fits and planned.config.folds >= full_folds:
            break
        fell_short = f"fits the limit only at {planned.config.folds} fold(s)" if planned.fits else \
            "does not fit the limit even at its smallest recipe"
        log(f"{planned.config.models[0]}'s probe {fell_short} (~{format_duration(planned.estimate_s)} of the "
            f"{format_duration(planned.budget_s)} left, at {planned.rates.features:,.0f} img/s): "
            f"the next backbone at hand")
        planned = planned_for(next_cfg())
    log(planned.line())
    left = limit - (time.perf_counter() - start)
    reserve = plan.reserve_s(planned.config, planned.rates, test=info.test_size, views=views)
    return planned, time.time() + left - reserve


def run(cfg: RunConfig, workspace: Workspace, kaggle_dir: Path | None = None, resume: str | None = None,
        split: SplitOptions = SplitOptions(), executor: Executor | None = None,
        log: Callable[[str], None] = LOG.info, metric: str | None = None,
        given: frozenset[str] | None = None, started: float | None = None) -> RunResult:
    """Play a competition end to end: prepare, fit, publish. Returns everything it measured.
    `given`: the settings the user gave, which a time limit's plan keeps (default: those not at their defaults).
    `started`: a `time.perf_counter()` the time limit counts from (the command line's: its process's
    start, `clock.process_start`); default: now."""
    entered = time.perf_counter()
    start = entered if started is None else started
    policy.check_models(cfg)
    deadline = None
    if resume:      # its config.json is the planned recipe: it goes on without a time limit
        run_dir, cfg, paths = open_resumed_run(workspace, resume)
    else:
        free = plan.left_to_plan(cfg, given)         # what a time limit may change: what was not given
        # the weights' file is found (or refused) before anything is prepared or trained, and
        # recorded, so config.json repeats the run from the same file
        backbones, why = policy.colour_backbones(cfg) if AUTO in cfg.models else ((), "")
        if AUTO not in cfg.models:
            cfg = cfg.replace(weights=policy.pretrained_weights(cfg, cfg.models), pretrained=False)
        # stored at the best backbone's size: a cheaper one the plan may take reads them resized
        paths = ensure_prepared(workspace, cfg.competition, kaggle_dir, split, log, metric,
                                policy.size_request(cfg, training_device().type, next(iter(backbones), None)))
        # refuse before training, not after: the day's limit may already be used up
        check_local_limit(paths.root, paths.root.name)
        info = read_prepared(paths.public)
        if why and info.channels != 1:
            log(why)
        # the stored size: config.json records it, so --config repeats it
        unresolved = cfg.replace(competition=paths.root.name,
                                 image_size=info.height if info.height == info.width else cfg.image_size)
        sample_images = load_public(paths.public).train_images[:64]

        def resolved(backbone: policy.Backbone | None = None) -> RunConfig:
            return policy.resolve(unresolved, channels=info.channels, labelled=info.train_size,
                                  stored_size=info.height, hflip=info.hflip, multi_label=info.multi_label,
                                  sample_images=sample_images, backbone=backbone)
        cfg = resolved()
        scratch_timm = [m for m in cfg.models if m.startswith("timm/") and not cfg.weights]
        if scratch_timm:
            log(f"{'+'.join(scratch_timm)} trains from scratch: no pretrained weights given or at hand (--weights "
                f"FILE, --weights-dir DIR, $COMPETITION_WEIGHTS, timm's cache, or --pretrained to fetch them)")
        # a colour `auto` model with its probe: the cheaper backbones at hand, should the best one's probe
        # not fit the limit (a fine-tune alone, `probe = off`, keeps the best)
        cheaper = [lambda b=b: resolved(b) for b in backbones[1:]] \
            if backbones and cfg.models == (backbones[0].model,) and "models" in free and cfg.probe != "off" \
            else []
        planned, deadline = plan_to_time_limit(cfg, paths, free, start, log, cheaper)
        cfg = planned.config if planned else cfg
        run_dir = new_run_dir(workspace, cfg)
        atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
        record = run_record(paths) | ({"plan": planned.record()} if planned else {})
        atomic_write_text(run_dir / "run.json", json.dumps(record, indent=2) + "\n")
    # what the process spent before `run` (Python, imports) is shown apart from preparing
    stage_s = {"start": entered - start, "prepare": time.perf_counter() - entered} if started is not None \
        else {"prepare": time.perf_counter() - start}
    log(f"run {run_dir.name} -> {run_dir}")
    fit_start = time.perf_counter()
    with stop_on_signals():
        try:
            fitted = fit(cfg, paths.public, run_dir, executor, log, deadline=deadline)
        except BaseException as e:
            signum = stopping.requested() or (signal.SIGINT if isinstance(e, KeyboardInterrupt) else None)
            if signum is None:
                raise
            # however the stop surfaced (our StopRequested, Lightning's SIGTERMException, a second
            # Ctrl+C), it ends the same way: the resume command and 128 + the signal's number
            log(f"interrupted: finished members and the last finished epoch are saved; continue with\n"
                f"  python -m competition run --resume {run_dir.name}")
            raise StopRequested(signum) from None
    stage_s["fit"] = time.perf_counter() - fit_start
    published = publish(fitted, paths, workspace.root, workspace.leaderboard, time.perf_counter() - start,
                        stage_s, resumed=bool(resume), log=log)
    return RunResult(fit=fitted, published=published, wall_s=time.perf_counter() - start)
