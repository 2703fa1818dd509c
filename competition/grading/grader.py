"""The grader: validate a submission (`submission.py`), then score it against the held-out answers
with the competition's metric (`metrics.py`), on the Public and Private rows apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidSubmissionError
from .metrics import Estimate, Metric, accuracy_of, clopper_pearson, get_metric
from .submission import Solution, SubmissionForm, read_solution, validate_submission

__all__ = ["Estimate", "Grader", "InvalidSubmissionError", "Score", "accuracy_of", "clopper_pearson", "format_score",
           "score_probabilities", "score_submission"]

@dataclass(frozen=True, kw_only=True)
class Score:
    metric: str
    public: Estimate
    private: Estimate
    overall: Estimate
    per_class: list[Estimate]       # accuracy (recall) of each true class, all test rows; multi-label:
                                    # each label's accuracy, decided at probability 1/2
    confusion: np.ndarray | None    # (K, K): rows true class, columns predicted; None for multi-label


def score_probabilities(probabilities: np.ndarray, solution: Solution, metric: Metric) -> Score:
    """Score class probabilities (N, K) (one-hot rows for labels) on the Public and Private rows."""
    num_classes = probabilities.shape[1]
    part = solution.public
    if solution.labels.ndim == 2:           # several labels an image: no confusion matrix
        hits = (probabilities >= 0.5) == solution.labels.astype(bool)
        return Score(metric=metric.name, public=metric.estimate(solution.labels[part], probabilities[part]),
                     private=metric.estimate(solution.labels[~part], probabilities[~part]),
                     overall=metric.estimate(solution.labels, probabilities),
                     per_class=[accuracy_of(hits[:, k]) for k in range(num_classes)], confusion=None)
    predicted = probabilities.argmax(1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (solution.labels, predicted), 1)
    hits = predicted == solution.labels
    per_class = [accuracy_of(hits[solution.labels == k]) for k in range(num_classes)]
    return Score(metric=metric.name, public=metric.estimate(solution.labels[part], probabilities[part]),
                 private=metric.estimate(solution.labels[~part], probabilities[~part]),
                 overall=metric.estimate(solution.labels, probabilities), per_class=per_class, confusion=confusion)


@dataclass(frozen=True, kw_only=True)
class Grader:
    """A competition's grader with its answers read once: what `score`, `run` and `serve` all grade with."""
    form: SubmissionForm
    ids: np.ndarray                 # the test ids, in test order
    solution: Solution
    metric: Metric

    @classmethod
    def read(cls, solution_path: Path, form: SubmissionForm, ids: np.ndarray, metric: str = "accuracy") -> "Grader":
        return cls(form=form, ids=ids, solution=read_solution(solution_path, form, ids), metric=get_metric(metric))

    def grade(self, path: Path) -> tuple[np.ndarray, Score]:
        """Validate, then score. The submission's class probabilities (one-hot for labels) and its score;
        InvalidSubmissionError (naming the line and field) for a file that cannot be scored."""
        probabilities = validate_submission(path, self.form, self.ids)
        return probabilities, score_probabilities(probabilities, self.solution, self.metric)


def score_submission(path: Path, solution_path: Path, form: SubmissionForm, ids: np.ndarray,
                     metric: str = "accuracy") -> tuple[np.ndarray, Score]:
    """Validate, then score. Returns the submission's class probabilities (one-hot for labels) and the score."""
    return Grader.read(solution_path, form, ids, metric).grade(path)


def format_score(score: Score, classes: tuple[str, ...]) -> str:
    """Public/private scores with intervals, per-class accuracy and the confusion matrix."""
    width = max(5, *(len(c) for c in classes))
    how = {"exact binomial": "exact binomial (Clopper-Pearson)", "bootstrap": "percentile bootstrap over rows "
           "(1,000 resamples)"}[score.public.interval]
    lines = [f"public {score.metric}:  {score.public}", f"private {score.metric}: {score.private}",
             f"all test rows:    {score.overall}", f"95% intervals: {how}.", "",
             "per-class accuracy (all test rows):"]
    lines += [f"  {name:>{width}}  {acc}" for name, acc in zip(classes, score.per_class)]
    if score.confusion is not None and len(classes) <= 30:
        lines += ["", "confusion matrix (rows: true class, columns: predicted):",
                  " " * (width + 2) + "".join(f"{name[:6]:>7}" for name in classes)]
        for name, row in zip(classes, score.confusion):
            lines.append(f"  {name:>{width}}" + "".join(f"{v:>7}" for v in row))
    return "\n".join(lines)
