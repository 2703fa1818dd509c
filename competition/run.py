"""`python -m competition run`: play a whole competition, one stage after another.

prepare -> train seeds -> ensemble -> pseudo-label and retrain (R rounds) -> submission.csv
-> grade against the held-out answers -> leaderboard row -> summary.

Training and prediction get `load_public(paths.public)` only. The answers are read after
the last prediction is made, to grade; nothing read from them goes back into training.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .competitions import get_competition
from .config import RunConfig
from .data import load_public
from .ensemble import accuracy, ensemble
from .grading import Score, read_solution, score_labels, validate_submission
from .leaderboard import Entry, add_entry, format_duration
from .prepare import (CompetitionPaths, SplitOptions, kaggle_folder_name, load_metadata, prepare,
                      prepare_kaggle_folder)
from .pseudo_label import PseudoLabels, select_pseudo_labels
from .report import write_report
from .sources import atomic_write_text
from .train import SeedResult, split_public, train_seeds, training_device


@dataclass(frozen=True)
class Workspace:
    """Where a user's competitions, runs and leaderboard live (the repository root by default)."""
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def submissions(self) -> Path:
        return self.root / "submissions"

    @property
    def leaderboard(self) -> Path:
        return self.root / "leaderboard.md"

    def competition(self, name: str) -> CompetitionPaths:
        return CompetitionPaths(self.data / name)


def ensure_prepared(workspace: Workspace, competition: str, kaggle_dir: Path | None,
                    options: SplitOptions, log: Callable[[str], None]) -> CompetitionPaths:
    """The prepared competition, (re)preparing it if it is missing or was split with other options."""
    name = kaggle_folder_name(kaggle_dir) if kaggle_dir is not None else competition
    paths = workspace.competition(name)
    if paths.is_prepared():
        metadata = load_metadata(paths.public)
        if all(metadata.get(k) == v for k, v in asdict(options).items()):
            return paths
        log(f"{paths.root} was prepared with other split options; preparing it again")
    if kaggle_dir is not None:
        return prepare_kaggle_folder(kaggle_dir, workspace.data, options, log)
    get_competition(name)
    return prepare(name, workspace.data, options, log=log)


@dataclass
class RoundResult:
    round: int
    seeds: list[SeedResult]
    val_acc: float                        # the ensemble's
    test_logits: torch.Tensor             # (N_test, K), the ensemble's
    pseudo: PseudoLabels | None = None    # the pseudo-labels this round trained on
    train_s: float = 0.0                  # wall time of training (or loading) the seeds
    ensemble_s: float = 0.0               # wall time of ensembling (and selecting pseudo-labels)


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    config: RunConfig
    rounds: list[RoundResult]
    predictions: np.ndarray               # (N_test,) the submission's labels
    wall_s: float
    scores: dict[str, Score] = field(default_factory=dict)   # stage name -> score, if answers exist
    stage_s: dict[str, float] = field(default_factory=dict)  # wall time of each stage outside training
    pseudo_precision: dict[int, float] = field(default_factory=dict)


def new_run_id(cfg: RunConfig) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{cfg.competition}-{cfg.model}"


def write_submission(path: Path, predictions: np.ndarray) -> None:
    frame = pd.DataFrame({"ImageId": np.arange(1, len(predictions) + 1), "Label": predictions})
    atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def write_pseudo_labels(path: Path, pseudo: PseudoLabels) -> None:
    frame = pd.DataFrame({"ImageId": pseudo.indices.numpy() + 1, "Label": pseudo.labels.numpy(),
                          "Confidence": pseudo.confidence.numpy().round(5)})
    atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def play(cfg: RunConfig, public_dir: Path, run_dir: Path, log: Callable[[str], None] = print
         ) -> list[RoundResult]:
    """Train, ensemble and pseudo-label; given the public folder only, it cannot see the answers."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    public = load_public(public_dir)
    data = split_public(public, cfg)
    log(f"{public.name}: {len(data.train_images):,} train / {len(data.val_images):,} validation / "
        f"{len(data.test_images):,} test images of {public.image_size}x{public.image_size}, "
        f"{public.num_classes} classes; training on {data.train_images.device.type}")
    seeds = list(range(cfg.seeds))
    rounds: list[RoundResult] = []
    pseudo = None
    for round_number in range(cfg.pseudo_rounds + 1):
        round_dir = run_dir / f"round{round_number}"
        if pseudo is None:
            log(f"round {round_number}: {cfg.seeds} x {cfg.model}, up to {cfg.epochs} epochs")
            images = labels = None
        else:
            log(f"round {round_number}: retraining with {len(pseudo.indices):,} pseudo-labelled test images "
                f"({cfg.pseudo_share:.0%} of each batch); per class {pseudo.per_class(public.num_classes)}")
            write_pseudo_labels(round_dir / "pseudo_labels.csv", pseudo)
            if not len(pseudo.indices):
                log("  no test image passed the confidence rule: this round retrains on the training set alone")
            device = data.test_images.device
            images, labels = data.test_images[pseudo.indices.to(device)], pseudo.labels.to(device)
        train_start = time.perf_counter()
        results = train_seeds(data, cfg, round_dir, seeds, images, labels, log)
        ensemble_start = time.perf_counter()
        val_logits = torch.stack([r.val_logits for r in results])
        test_logits = torch.stack([r.test_logits for r in results])
        val_acc = accuracy(ensemble(val_logits, cfg.ensemble), data.val_labels.cpu())
        log(f"  ensemble of {len(results)}: val acc {val_acc:.4f}")
        if rounds and val_acc < rounds[-1].val_acc:
            log(f"  WARNING: pseudo-label round {round_number} lowered the ensemble's validation accuracy "
                f"from {rounds[-1].val_acc:.4f} to {val_acc:.4f}; the submission still uses this round")
        rnd = RoundResult(round_number, results, val_acc, ensemble(test_logits, cfg.ensemble), pseudo)
        if round_number < cfg.pseudo_rounds:
            pseudo = select_pseudo_labels(test_logits, cfg.pseudo_threshold, cfg.label_smoothing, cfg.ensemble)
        rnd.train_s, rnd.ensemble_s = ensemble_start - train_start, time.perf_counter() - ensemble_start
        rounds.append(rnd)
    return rounds


def grade_run(result: RunResult, paths: CompetitionPaths, classes: tuple[str, ...]) -> None:
    """Score every seed, every round's ensemble and the submission; measure pseudo-label precision."""
    solution = read_solution(paths.solution)
    k = len(classes)
    for rnd in result.rounds:
        for seed in rnd.seeds:
            result.scores[f"round {rnd.round} seed {seed.seed}"] = score_labels(
                seed.test_logits.argmax(1).numpy(), solution, k)
        result.scores[f"round {rnd.round} ensemble"] = score_labels(rnd.test_logits.argmax(1).numpy(), solution, k)
        if rnd.pseudo is not None and len(rnd.pseudo.indices):
            truth = solution.labels[rnd.pseudo.indices.numpy()]
            result.pseudo_precision[rnd.round] = float((rnd.pseudo.labels.numpy() == truth).mean())
    result.scores["submission"] = score_labels(result.predictions, solution, k)


def summary_table(result: RunResult) -> str:
    """One row per seed, ensemble and pseudo round: validation, public, private accuracy, time."""
    rows = [("stage", "val acc", "public", "private", "time")]

    def scored(name: str) -> tuple[str, str]:
        score = result.scores.get(name)
        return (f"{score.public.value:.4f}", f"{score.private.value:.4f}") if score else ("-", "-")

    for rnd in result.rounds:
        for seed in rnd.seeds:
            name = f"round {rnd.round} seed {seed.seed}"
            rows.append((name, f"{seed.val_acc:.4f}", *scored(name), f"{seed.wall_s:.1f}s"))
        name = f"round {rnd.round} ensemble"
        label = name if rnd.pseudo is None else f"{name} (+{len(rnd.pseudo.indices):,} pseudo)"
        rows.append((label, f"{rnd.val_acc:.4f}", *scored(name), ""))
    rows.append(("submission", f"{result.rounds[-1].val_acc:.4f}", *scored("submission"),
                 format_duration(result.wall_s)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths))) for row in rows)


def metrics(result: RunResult) -> dict:
    return {
        "run_id": result.run_id, "wall_s": result.wall_s, "device": training_device().type,
        "stage_s": result.stage_s, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rounds": [{"round": r.round, "ensemble_val_acc": r.val_acc, "train_s": r.train_s,
                    "ensemble_s": r.ensemble_s,
                    "pseudo_labels": None if r.pseudo is None else len(r.pseudo.indices),
                    "pseudo_precision": result.pseudo_precision.get(r.round),
                    "seeds": [s.summary() for s in r.seeds]} for r in result.rounds],
        "scores": {name: {"public": s.public.value, "public_ci": [s.public.low, s.public.high],
                          "private": s.private.value, "private_ci": [s.private.low, s.private.high]}
                   for name, s in result.scores.items()},
    }


def run(cfg: RunConfig, workspace: Workspace, kaggle_dir: Path | None = None, resume: str | None = None,
        split: SplitOptions = SplitOptions(), log: Callable[[str], None] = print) -> RunResult:
    """Play a competition end to end and return everything it measured."""
    start = time.perf_counter()
    stage_s: dict[str, float] = {}
    if resume:
        run_dir = workspace.submissions / resume
        if not (run_dir / "config.json").is_file():
            raise FileNotFoundError(f"{run_dir}: no config.json, so there is no run {resume!r} to resume")
        cfg = RunConfig(**json.loads((run_dir / "config.json").read_text()))
        run_id = resume
        log(f"resuming {run_id}: finished seeds are loaded, not retrained")
        paths = workspace.competition(cfg.competition)
    else:
        paths = ensure_prepared(workspace, cfg.competition, kaggle_dir, split, log)
        stage_s["prepare"] = time.perf_counter() - start
        cfg = cfg.replace(competition=paths.root.name)
        run_id = new_run_id(cfg)
        run_dir = workspace.submissions / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
    log(f"run {run_id} -> {run_dir}")

    play_start = time.perf_counter()
    rounds = play(cfg, paths.public, run_dir, log)
    stage_s["train_ensemble_pseudo"] = time.perf_counter() - play_start
    submit_start = time.perf_counter()
    predictions = rounds[-1].test_logits.argmax(1).numpy()
    classes = tuple(load_metadata(paths.public)["classes"])
    write_submission(run_dir / "submission.csv", predictions)
    validate_submission(run_dir / "submission.csv", len(predictions), len(classes))
    write_submission(workspace.root / "submission.csv", predictions)
    torch.save({f"round{r.round}": r.test_logits for r in rounds}, run_dir / "test_logits.pt")
    stage_s["submission"] = time.perf_counter() - submit_start
    result = RunResult(run_id, run_dir, cfg, rounds, predictions, time.perf_counter() - start, stage_s=stage_s)

    if paths.has_answers():
        score_start = time.perf_counter()
        grade_run(result, paths, classes)
        final = result.scores["submission"]
        report_link = f"[{run_id}]({(run_dir / 'report.html').relative_to(workspace.root).as_posix()})"
        rank = add_entry(workspace.leaderboard, Entry(
            cfg.competition, final.public.value, final.private.value, report_link, cfg.model, str(cfg.seeds),
            str(cfg.pseudo_rounds), format_duration(result.wall_s) + (" (resumed)" if resume else ""),
            datetime.now(timezone.utc).strftime("%Y-%m-%d")))
        stage_s["score_and_leaderboard"] = time.perf_counter() - score_start
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics(result), indent=2) + "\n")
    report_start = time.perf_counter()
    report = write_report(run_dir, paths)
    stage_s["report"] = time.perf_counter() - report_start
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics(result), indent=2) + "\n")

    log("")
    log(summary_table(result))
    for round_number, precision in result.pseudo_precision.items():
        rnd = rounds[round_number]
        log(f"pseudo-labels of round {round_number}: {len(rnd.pseudo.indices):,} used, precision {precision:.4f} "
            f"against the answers (measured after training; never used by it)")
    log(f"submission: {workspace.root / 'submission.csv'} (copy in {run_dir})")
    if paths.has_answers():
        log(f"public {final.public}\nprivate {final.private}\nleaderboard: rank {rank} for {cfg.competition} "
            f"in {workspace.leaderboard}")
    else:
        log(f"no answers for {cfg.competition} ({paths.solution} is absent): the submission cannot be scored")
    log(f"report: {report}")
    return result
