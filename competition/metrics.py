"""The competition's metric: accuracy (the default), macro-F1 or log-loss, each with a 95% interval.

A metric scores class probabilities (N, K) against true class indices (N,); label submissions
are one-hot rows. Accuracy has an exact binomial (Clopper-Pearson) interval; macro-F1 and
log-loss have none, so theirs is a seeded percentile bootstrap over the rows, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.stats import beta

from .errors import ConfigError

BOOTSTRAP_RESAMPLES = 1000
LOG_LOSS_EPS = 1e-15        # Kaggle's clipping of submitted probabilities


@dataclass(frozen=True)
class Estimate:
    """A score on n rows with its 95% interval and how the interval was made."""
    value: float
    low: float
    high: float
    total: int
    interval: str           # "exact binomial" or "bootstrap"
    correct: int | None = None      # accuracy only: the hits behind the value

    def __str__(self) -> str:
        rows = f"{self.correct:,}/{self.total:,}" if self.correct is not None else f"{self.total:,} rows"
        return f"{self.value:.4f}  (95% CI {self.low:.4f}-{self.high:.4f}, {rows})"


def clopper_pearson(correct: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval for a proportion."""
    if total == 0:
        return float("nan"), float("nan")
    alpha = 1 - level
    low = 0.0 if correct == 0 else float(beta.ppf(alpha / 2, correct, total - correct + 1))
    high = 1.0 if correct == total else float(beta.ppf(1 - alpha / 2, correct + 1, total - correct))
    return low, high


def accuracy_of(hits: np.ndarray) -> Estimate:
    correct, total = int(np.sum(hits)), int(np.size(hits))
    value = correct / total if total else float("nan")
    return Estimate(value, *clopper_pearson(correct, total), total, "exact binomial", correct)


def _bootstrap(values_of: Callable[[np.ndarray], np.ndarray], n: int, value: float, seed: int = 0) -> Estimate:
    """Percentile interval of `values_of(rows)` over resamples; `rows` is (B, n) row indices."""
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, "bootstrap")
    rows = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))
    low, high = np.quantile(values_of(rows), [0.025, 0.975])
    return Estimate(value, float(low), float(high), n, "bootstrap")


def macro_f1_values(truth: np.ndarray, predicted: np.ndarray, num_classes: int, rows: np.ndarray) -> np.ndarray:
    """Macro-F1 of each resample (rows (B, n)), counted with one bincount over all of them.
    A class absent from both truth and prediction in a resample counts as F1 = 1 (as scikit-learn's
    zero_division=1 would); the usual case has every class present."""
    b = len(rows)
    offset = (np.arange(b) * num_classes)[:, None]
    t, p = truth[rows] + offset, predicted[rows] + offset
    size = b * num_classes
    tp = np.bincount(t[t == p], minlength=size).reshape(b, num_classes)
    true_count = np.bincount(t.ravel(), minlength=size).reshape(b, num_classes)
    pred_count = np.bincount(p.ravel(), minlength=size).reshape(b, num_classes)
    denominator = true_count + pred_count
    f1 = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 1.0)
    return f1.mean(axis=1)


def clipped(probabilities: np.ndarray) -> np.ndarray:
    """Kaggle's log-loss treatment: clip to [eps, 1 - eps], then rescale each row to sum to 1."""
    p = np.clip(probabilities, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return p / p.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    needs_probabilities: bool       # the submission holds one probability column per class

    def estimate(self, truth: np.ndarray, probabilities: np.ndarray) -> Estimate:
        """Score (N, K) class probabilities (one-hot rows for labels) against true classes (N,)."""
        truth = np.asarray(truth, dtype=np.int64)
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if self.name == "accuracy":
            return accuracy_of(probabilities.argmax(1) == truth)
        if self.name == "macro-f1":
            predicted, k = probabilities.argmax(1), probabilities.shape[1]
            whole = np.arange(len(truth))[None, :]
            value = float(macro_f1_values(truth, predicted, k, whole)[0])
            return _bootstrap(lambda rows: macro_f1_values(truth, predicted, k, rows), len(truth), value)
        losses = -np.log(clipped(probabilities)[np.arange(len(truth)), truth])
        return _bootstrap(lambda rows: losses[rows].mean(axis=1), len(truth), float(losses.mean()))

    def better(self, a: float, b: float) -> bool:
        """Is score a strictly better than score b?"""
        return a > b if self.higher_is_better else a < b

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", higher_is_better=True, needs_probabilities=False),
    "macro-f1": Metric("macro-f1", higher_is_better=True, needs_probabilities=False),
    "log-loss": Metric("log-loss", higher_is_better=False, needs_probabilities=True),
}


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")
    return METRICS[name]


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros((len(labels), num_classes))
    out[np.arange(len(labels)), labels] = 1.0
    return out
