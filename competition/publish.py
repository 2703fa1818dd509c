"""Publish a fit: submission.csv, grading, the leaderboard row, metrics.json, the summary and the report.

This is the grader's side: it reads the held-out answers (`private/solution.csv`) after every
prediction is made, to score. Nothing it reads goes back into a fit.
"""

from __future__ import annotations

import logging

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .preparing.competitions import COMPETITIONS, get_competition
from .prepared import load_test_ids, read_prepared
from .errors import SubmissionLimitError
from .fitting.ensemble import probabilities
from .fitting.fit import FitResult
from .grading.grader import Score, score_probabilities
from .grading.metrics import accuracy_of
from .record import RECORD, MemberRecord, RoundRecord, RunRecord, StageScore, SubmissionRecord
from .workspace import format_duration
from .grading.metrics import get_metric
from .workspace import CompetitionPaths
from .report import write_report
from .grading.scoring import Row, grade_and_record
from .grading.rules import read_rules
from .workspace import atomic_write_text
from .grading.submission import Solution, SubmissionForm, read_solution, validate_submission, write_submission

LOG = logging.getLogger("competition")


@dataclass
class Published:
    submission: Path
    scores: dict[str, Score] = field(default_factory=dict)   # stage name -> score, if answers exist
    pseudo_precision: dict[int, float] = field(default_factory=dict)
    rank: int | None = None
    report: Path | None = None
    record: RunRecord | None = None     # what metrics.json holds


def submission_form(paths: CompetitionPaths) -> tuple[SubmissionForm, np.ndarray]:
    """The competition's submission form and its test ids, in test order."""
    return read_prepared(paths.public).submission, load_test_ids(paths.public)


def grade_fit(fit: FitResult, solution: Solution, form: SubmissionForm) -> tuple[dict[str, Score], dict[int, float]]:
    """Score every member and every round's ensemble as a submission file of the competition's
    form would hold them, with the competition's metric; measure pseudo-label precision."""
    metric = get_metric(fit.metric)
    scores, precision = {}, {}

    def as_submitted(logits, temperature: float = 1.0, decision: str = "argmax") -> np.ndarray:
        return form.as_submitted(probabilities(logits, temperature, decision, fit.multi_label))

    for rnd in fit.rounds:
        for member, logits in zip(rnd.ensembled, rnd.member_test_logits, strict=True):
            if member.round == rnd.round:       # an earlier round's members were scored with their own round
                scores[member.name] = score_probabilities(as_submitted(logits, decision=rnd.decision), solution,
                                                          metric)
        scores[f"round {rnd.round} ensemble"] = score_probabilities(
            as_submitted(rnd.test_logits, rnd.temperature, rnd.decision), solution, metric)
        if rnd.pseudo is not None and len(rnd.pseudo.indices):
            truth = solution.labels[rnd.pseudo.indices.numpy()]
            right = rnd.pseudo.labels.numpy() == truth
            precision[rnd.round] = float((right.all(1) if right.ndim == 2 else right).mean())   # every label right
    return scores, precision


def members_text(fit: FitResult) -> str:
    cfg = fit.config
    folds = f"{cfg.folds} folds" if cfg.folds > 1 else "1 holdout"
    return f"{folds} x {cfg.seeds} seed{'s' if cfg.seeds > 1 else ''}" + \
        (f" x {len(cfg.models)} models" if len(cfg.models) > 1 else "")


def summary_table(fit: FitResult, scores: dict[str, Score], wall_s: float, sealed: bool = False) -> str:
    """One row per member, round ensemble and the submission: validation accuracy, then public and
    private scores in the competition's metric, and time."""
    metric = "" if fit.metric == "accuracy" else f" {fit.metric}"
    rows = [("stage", "val acc / OOF", f"public{metric}", f"private{metric}", "time")]

    def scored(name: str) -> tuple[str, str]:
        score = scores.get(name)
        if not score:
            return "-", "-"
        return f"{score.public.value:.4f}", "sealed" if sealed else f"{score.private.value:.4f}"

    for rnd in fit.rounds:
        for m in rnd.members:
            rows.append((m.name, f"{m.val_acc:.4f}", *scored(m.name), f"{m.wall_s:.1f}s"))
        name = f"round {rnd.round} ensemble"
        label = name + ("" if rnd.pseudo is None else f" (+{len(rnd.pseudo.indices):,} pseudo)") + \
            (" with earlier members" if rnd.pooled else "")
        rows.append((label, f"{rnd.oof.value:.4f}", *scored(name), f"{rnd.train_s + rnd.ensemble_s:.1f}s"))
    rows.append((f"submission (round {fit.chosen})", f"{fit.final.oof.value:.4f}", *scored("submission"),
                 format_duration(wall_s)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths))) for row in rows)


def run_record(fit: FitResult, published: Published, wall_s: float, stage_s: dict[str, float],
               sealed: bool = False, submission: SubmissionRecord | None = None, refused: str | None = None
               ) -> RunRecord:
    """Everything measured, as the run's record (metrics.json). A sealed competition's private scores
    (and pseudo-label precision, which reads private rows) are left out."""
    def stage(s: Score) -> StageScore:
        return StageScore(public=s.public, private=None if sealed else s.private)

    def member(m) -> MemberRecord:
        return MemberRecord(name=m.name, round=m.round, fold=m.fold, seed=m.seed, model=m.model, val_acc=m.val_acc,
                            val_size=m.val_size, best_epoch=m.best_epoch, epochs_run=m.epochs_run, wall_s=m.wall_s,
                            device=m.device, precision=m.precision, out_of_time=m.out_of_time, probe_C=m.probe_C,
                            folder=Path(m.out_dir).relative_to(fit.run_dir).as_posix())

    final, cfg = fit.final, fit.config
    rounds = tuple(RoundRecord(round=r.round, cv=r.cv, oof=r.oof, oof_without_tta=r.oof_plain, oof_with_tta=r.oof_tta,
                               tta=r.tta, weights=r.weights, train_s=r.train_s, ensemble_s=r.ensemble_s,
                               pseudo_labels=None if r.pseudo is None else len(r.pseudo.indices),
                               pseudo_precision=None if sealed else published.pseudo_precision.get(r.round),
                               pooled=r.pooled,
                               members=tuple(member(m) for m in r.members)) for r in fit.rounds)
    return RunRecord(run_id=fit.run_dir.name, competition=cfg.competition, metric=fit.metric,
                     models=tuple(cfg.member_models), folds=cfg.folds, seeds=cfg.seeds, cv_kind=fit.cv_kind,
                     fingerprint=fit.fingerprint, device=fit.device, executor=fit.executor, wall_s=wall_s,
                     stage_s=stage_s, peak_rss_mib=peak_rss_mib(), chosen_round=fit.chosen, tta=final.tta,
                     temperature=final.temperature, decision=final.decision, sealed=sealed, cv=final.cv,
                     oof=final.oof, rounds=rounds, scores={n: stage(s) for n, s in published.scores.items()},
                     submission=submission, rank=published.rank, refused=refused)


def peak_rss_mib() -> float:
    """This process's peak resident memory (0 where the platform does not say: Windows)."""
    try:
        import resource
    except ImportError:
        return 0.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def submission_record(score: Score, submitted: np.ndarray, solution: Solution) -> SubmissionRecord:
    """The submission on every test row: its metric, its accuracy (every label right, several an
    image), each class's accuracy and the confusion matrix."""
    if solution.labels.ndim == 2:
        right = ((submitted >= 0.5) == (solution.labels == 1)).all(1)
    else:
        right = submitted.argmax(1) == solution.labels
    return SubmissionRecord(overall=score.overall, accuracy=accuracy_of(right), per_class=tuple(score.per_class),
                            confusion=None if score.confusion is None else
                            tuple(tuple(int(v) for v in row) for row in score.confusion))


def implausible(name: str, score: Score, sealed: bool = False) -> list[str]:
    """Warnings for accuracies above the best honest result on record for this competition."""
    record = get_competition(name).record if name in COMPETITIONS else None
    if record is None or score.metric != "accuracy":
        return []
    parts = [("public", score.public)] + ([] if sealed else [("private", score.private)])
    return [f"WARNING: {part} accuracy {acc.value:.4f} is above {record:.4f}, the best honest result on record "
            f"for {name}: this suggests leaked labels (answers or test images in training)"
            for part, acc in parts if acc.value > record]


def publish(fit: FitResult, paths: CompetitionPaths, workspace_root: Path, leaderboard: Path,
            wall_s: float, stage_s: dict[str, float], resumed: bool = False,
            log: Callable[[str], None] = LOG.info) -> Published:
    """Write and validate the submission, then grade, rank, record and report it."""
    run_dir, cfg = fit.run_dir, fit.config
    form, ids = submission_form(paths)
    write_submission(run_dir / "submission.csv", form, ids, fit.probabilities)
    validate_submission(run_dir / "submission.csv", form, ids)     # the file passes the grader's checks, answers or not
    write_submission(workspace_root / "submission.csv", form, ids, fit.probabilities)
    published = Published(workspace_root / "submission.csv")
    tmp = run_dir / "test_logits.pt.tmp"
    torch.save({f"round{r.round}": r.test_logits for r in fit.rounds} | {"submission": fit.final.test_logits}, tmp)
    tmp.replace(run_dir / "test_logits.pt")
    name, sealed = read_prepared(paths.public).name, read_rules(paths.root).hides_private
    limit, submitted_record = None, None
    if paths.has_answers():
        report_link = f"[{run_dir.name}]({(run_dir / 'report.html').relative_to(workspace_root).as_posix()})"
        row = Row(submission_id=run_dir.name, run=report_link, model="+".join(cfg.models), members=members_text(fit),
                  pseudo_rounds=str(len(fit.rounds) - 1), cv=fit.final.cv.value, is_run=True,
                  wall_time=format_duration(wall_s) + (" (resumed)" if resumed else ""))
        try:
            graded = grade_and_record(run_dir / "submission.csv", paths, row, leaderboard)
        except SubmissionLimitError as e:
            limit = str(e)
        else:
            published.rank = graded.rank
            solution = read_solution(paths.solution, form, ids)
            published.scores, published.pseudo_precision = grade_fit(fit, solution, form)
            published.scores["submission"] = graded.score
            if not sealed:
                submitted_record = submission_record(graded.score, form.as_submitted(fit.probabilities), solution)
    record = published.record = run_record(fit, published, wall_s, stage_s, sealed, submitted_record, limit)
    atomic_write_text(run_dir / RECORD, record.to_json())
    published.report = write_report(run_dir, paths)

    log("")
    log(summary_table(fit, published.scores, wall_s, sealed))
    oof = fit.final.oof
    log(f"out-of-fold accuracy ({fit.cv_kind}, round {fit.chosen}): {oof}")
    if fit.metric != "accuracy":
        log(f"out-of-fold {fit.metric} ({fit.cv_kind}, round {fit.chosen}): {fit.final.cv} "
            f"(95% interval: {fit.final.cv.interval})")
    for round_number, precision in ({} if sealed else published.pseudo_precision).items():
        used = len(fit.rounds[round_number].pseudo.indices)
        log(f"pseudo-labels of round {round_number}: {used:,} used, precision {precision:.4f} "
            f"against the answers (measured after training; never used by it)")
    log(f"submission: {published.submission} (copy in {run_dir})")
    if limit is not None:
        log(limit)
    elif published.rank is not None:
        final = published.scores["submission"]
        log(f"public {fit.metric} {final.public}")
        log("private sealed: shown after `python -m competition select` picks the final submissions" if sealed
            else f"private {fit.metric} {final.private}")
        log(f"leaderboard: rank {published.rank} for {paths.root.name} in {leaderboard}")
        for warning in implausible(name, final, sealed):
            LOG.warning(warning)
    else:
        log(f"no answers for {paths.root.name} ({paths.solution} is absent): the submission cannot be scored")
    log(f"report: {published.report}")
    return published
