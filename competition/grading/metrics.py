"""The competition's metric, each with a 95% interval: the metrics of Kaggle's image competitions.

A metric scores class probabilities (N, K) against true class indices (N,); a label submission
is one-hot rows, a top-k submission rows whose order ranks the classes. The value is scikit-
learn's where it has the metric (`f1_score`, `log_loss`'s formula, `roc_auc_score`,
`cohen_kappa_score`), computed by hand only for MAP@k, which it lacks. Accuracy (and micro-F1,
which equals it for single-label data) has an exact binomial (Clopper-Pearson) interval; the
others have none, so theirs is a seeded percentile bootstrap over the rows, computed for all
resamples at once (the `*_values` functions) and named "bootstrap".

Where Kaggle's documented rule and scikit-learn differ, Kaggle's is followed: log-loss clips
probabilities to [1e-15, 1 - 1e-15] (scikit-learn clips at float64's eps), then rescales each row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
from scipy.stats import beta
from sklearn.metrics import cohen_kappa_score, f1_score, roc_auc_score

from ..errors import ConfigError

BOOTSTRAP_RESAMPLES = 1000
LOG_LOSS_EPS = 1e-15        # Kaggle's clipping of submitted probabilities
RESAMPLES_PER_CHUNK = 100   # the AUC bootstrap holds (chunk, N) row counts at a time


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


def bootstrap(values_of: Callable[[np.ndarray], np.ndarray], n: int, value: float, seed: int = 0) -> Estimate:
    """Percentile interval of `values_of(rows)` over resamples; `rows` is (B, n) row indices.
    A resample where the metric is undefined (one class only, for AUC) is NaN and left out."""
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, "bootstrap")
    rows = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))
    values = values_of(rows)
    if np.isnan(values).all():
        return Estimate(value, float("nan"), float("nan"), n, "bootstrap")
    low, high = np.nanquantile(values, [0.025, 0.975])
    return Estimate(value, float(low), float(high), n, "bootstrap")


# ---------------------------------------------------------------- each metric over many resamples


def macro_f1_values(truth: np.ndarray, predicted: np.ndarray, num_classes: int, rows: np.ndarray) -> np.ndarray:
    """Macro-F1 of each resample (rows (B, n)), counted with one bincount over all of them.
    As scikit-learn's `f1_score(average="macro")`: the mean over the classes that occur in the
    resample's truth or predictions; a class with no true positive scores 0."""
    b = len(rows)
    offset = (np.arange(b) * num_classes)[:, None]
    t, p = truth[rows] + offset, predicted[rows] + offset
    size = b * num_classes
    tp = np.bincount(t[t == p], minlength=size).reshape(b, num_classes)
    true_count = np.bincount(t.ravel(), minlength=size).reshape(b, num_classes)
    pred_count = np.bincount(p.ravel(), minlength=size).reshape(b, num_classes)
    denominator = true_count + pred_count
    present = denominator > 0
    f1 = np.where(present, 2 * tp / np.maximum(denominator, 1), 0.0)
    return f1.sum(axis=1) / present.sum(axis=1)


def roc_auc_values(truth: np.ndarray, scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Binary ROC AUC of each resample: the chance a positive outscores a negative, ties counting
    a half (as `roc_auc_score`), from each row's count in the resample; NaN where a resample has
    one class only. Rows are sorted by score once; tied scores form one group."""
    order = np.argsort(scores, kind="stable")
    sorted_scores, positive = scores[order], truth[order].astype(bool)
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    where = np.empty_like(order)
    where[order] = np.arange(len(order))         # a row's place in score order
    n, out = len(scores), []
    for chunk in np.array_split(rows, max(1, len(rows) // RESAMPLES_PER_CHUNK)):
        b = len(chunk)
        counts = np.bincount((where[chunk] + (np.arange(b) * n)[:, None]).ravel(),
                             minlength=b * n).reshape(b, n)
        pos = np.add.reduceat(counts * positive, starts, axis=1)
        neg = np.add.reduceat(counts * ~positive, starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        pairs = pos.sum(1) * neg.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(pairs > 0, (pos * (below + 0.5 * neg)).sum(1) / pairs, np.nan))
    return np.concatenate(out)


def quadratic_kappa_values(truth: np.ndarray, predicted: np.ndarray, num_classes: int,
                           rows: np.ndarray) -> np.ndarray:
    """Quadratic weighted kappa of each resample, as `cohen_kappa_score(weights="quadratic")`:
    1 - sum(W * observed) / sum(W * expected), W[i, j] = (i - j)^2, expected from the marginals."""
    b, k = len(rows), num_classes
    cells = truth[rows] * k + predicted[rows] + (np.arange(b) * k * k)[:, None]
    observed = np.bincount(cells.ravel(), minlength=b * k * k).reshape(b, k, k).astype(np.float64)
    n = observed.sum(axis=(1, 2))[:, None, None]
    expected = observed.sum(2)[:, :, None] * observed.sum(1)[:, None, :] / n
    weights = (np.arange(k)[:, None] - np.arange(k)[None, :]) ** 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1 - (weights * observed).sum(axis=(1, 2)) / (weights * expected).sum(axis=(1, 2))


def mean_over_columns(values: list[np.ndarray]) -> np.ndarray:
    """Per resample, the mean over the columns where it is defined (both classes drawn); NaN if none."""
    stacked = np.stack(values)
    defined = ~np.isnan(stacked)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined, stacked, 0).sum(0) / defined.sum(0)


def average_precision_at_k(truth: np.ndarray, probabilities: np.ndarray, k: int) -> np.ndarray:
    """Each row's precision at the true class's rank among the k most probable (1/rank), 0 beyond:
    Kaggle's MAP@k with one true label per image (whale-categorization)."""
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    # a class a top-k submission did not list has probability 0: never a hit, whatever its place
    hit = (top == truth[:, None]) & (np.take_along_axis(probabilities, top, axis=1) > 0)
    return np.where(hit.any(1), 1.0 / (hit.argmax(1) + 1), 0.0)


def clipped(probabilities: np.ndarray) -> np.ndarray:
    """Kaggle's log-loss treatment: clip to [eps, 1 - eps], then rescale each row to sum to 1."""
    p = np.clip(probabilities, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return p / p.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------- the metrics


Submits = Literal["label", "probabilities", "top-k"]


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    submits: Submits                # what a submission holds: a label, class probabilities, k ranked labels
    k: int = 1                      # map@k: how many labels a row may rank

    @property
    def needs_probabilities(self) -> bool:
        """The submission holds probabilities, so their calibration matters (a temperature on OOF)."""
        return self.submits == "probabilities"

    @property
    def binary_only(self) -> bool:
        return self.name == "roc-auc"

    def value(self, truth: np.ndarray, probabilities: np.ndarray) -> float:
        """The score of (N, K) class probabilities (one-hot rows for labels) against true classes
        (N,), by scikit-learn where it has the metric; NaN where it is undefined (no rows; AUC of
        one class)."""
        truth, probabilities = _arrays(truth, probabilities)
        n, k = probabilities.shape
        predicted = probabilities.argmax(1)
        if n == 0:
            return float("nan")
        if truth.ndim == 2:
            return self._multi_label_value(truth, probabilities)
        if self.name == "accuracy":
            return float((predicted == truth).mean())
        if self.name == "micro-f1":
            return float(f1_score(truth, predicted, average="micro"))
        if self.name == "macro-f1":
            return float(f1_score(truth, predicted, average="macro", zero_division=0))
        if self.name == "log-loss":
            return float(-np.log(clipped(probabilities)[np.arange(n), truth]).mean())
        if self.name == "roc-auc":      # the second class is the positive one
            return float(roc_auc_score(truth, probabilities[:, 1])) if len(np.unique(truth)) == 2 else float("nan")
        if self.name == "mean-roc-auc":
            # one-vs-rest per class column, averaged over the columns with both classes (plant-pathology-2020)
            aucs = [roc_auc_score(truth == c, probabilities[:, c]) for c in range(k) if 0 < (truth == c).sum() < n]
            return float(np.mean(aucs)) if aucs else float("nan")
        if self.name == "qwk":
            return float(cohen_kappa_score(truth, predicted, weights="quadratic", labels=np.arange(k)))
        if self.name.startswith("map@"):
            return float(average_precision_at_k(truth, probabilities, self.k).mean())
        raise AssertionError(f"no scorer for {self.name}")

    def resampled(self, truth: np.ndarray, probabilities: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The score of each resample of the rows, (B, n) row indices -> (B,), all at once."""
        truth, probabilities = _arrays(truth, probabilities)
        n, k = probabilities.shape
        predicted = probabilities.argmax(1)
        if truth.ndim == 2:
            return self._multi_label_resampled(truth, probabilities, rows)
        if self.name in ("accuracy", "micro-f1"):
            # single-label micro-F1 is accuracy: every wrong row is one false positive and one false negative
            return (predicted == truth)[rows].mean(axis=1)
        if self.name == "macro-f1":
            return macro_f1_values(truth, predicted, k, rows)
        if self.name == "log-loss":
            return -np.log(clipped(probabilities)[np.arange(n), truth])[rows].mean(axis=1)
        if self.name == "roc-auc":
            return roc_auc_values(truth, probabilities[:, 1], rows)
        if self.name == "mean-roc-auc":
            return mean_over_columns([roc_auc_values((truth == c).astype(np.int64), probabilities[:, c], rows)
                                      for c in range(k)])
        if self.name == "qwk":
            return quadratic_kappa_values(truth, predicted, k, rows)
        if self.name.startswith("map@"):
            return average_precision_at_k(truth, probabilities, self.k)[rows].mean(axis=1)
        raise AssertionError(f"no scorer for {self.name}")

    def estimate(self, truth: np.ndarray, probabilities: np.ndarray) -> Estimate:
        """The score with its 95% interval: exact binomial for accuracy and (single-label) micro-F1,
        the seeded percentile bootstrap for the rest."""
        truth, probabilities = _arrays(truth, probabilities)
        value = self.value(truth, probabilities)
        if self.name == "accuracy" and truth.ndim == 2:          # subset accuracy: a row is right or not
            hits = accuracy_of(((probabilities >= 0.5) == truth.astype(bool)).all(1))
            return Estimate(value, hits.low, hits.high, hits.total, hits.interval, hits.correct)
        if self.name in ("accuracy", "micro-f1") and truth.ndim == 1:
            hits = accuracy_of(probabilities.argmax(1) == truth)
            return Estimate(value, hits.low, hits.high, hits.total, hits.interval, hits.correct)
        return bootstrap(lambda rows: self.resampled(truth, probabilities, rows), len(truth), value)

    # ------------------------------------------------ several labels an image: truth (N, L) of 0/1

    @property
    def scores_multi_label(self) -> bool:
        """Whether this metric can score a multi-label competition (several labels an image)."""
        return self.name in MULTI_LABEL_METRICS

    def _multi_label_value(self, truth: np.ndarray, probabilities: np.ndarray) -> float:
        """Per-label probabilities (N, L) against 0/1 truth, as scikit-learn scores multi-label data:
        a label is predicted from probability 0.5 (a run applies its own threshold before); accuracy
        is subset accuracy; macro-F1 averages every label column (an empty one scores 0)."""
        predicted = probabilities >= 0.5
        if self.name == "accuracy":
            return float((predicted == truth.astype(bool)).all(1).mean())
        if self.name in ("micro-f1", "macro-f1"):
            return float(f1_score(truth, predicted.astype(np.int64), average=self.name.split("-")[0], zero_division=0))
        if self.name == "mean-roc-auc":
            # column-wise AUC, averaged over the columns with both values (ranzcr-clip's rule)
            n = len(truth)
            aucs = [roc_auc_score(truth[:, c], probabilities[:, c]) for c in range(truth.shape[1])
                    if 0 < truth[:, c].sum() < n]
            return float(np.mean(aucs)) if aucs else float("nan")
        raise ConfigError(f"{self.name} does not score a multi-label competition; use one of "
                          f"{', '.join(MULTI_LABEL_METRICS)}")

    def _multi_label_resampled(self, truth: np.ndarray, probabilities: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Each resample's score, from each row's count in it (B, N) times per-row label counts."""
        if self.name == "mean-roc-auc":
            return mean_over_columns([roc_auc_values(truth[:, c], probabilities[:, c], rows)
                                      for c in range(truth.shape[1])])
        actual, predicted = truth.astype(bool), probabilities >= 0.5
        if self.name == "accuracy":
            return (predicted == actual).all(1)[rows].mean(axis=1)
        b, n = rows.shape
        counts = np.bincount((rows + (np.arange(b) * n)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        tp = counts @ (actual & predicted).astype(np.float64)           # (B, L)
        positives, called = counts @ actual.astype(np.float64), counts @ predicted.astype(np.float64)
        if self.name == "micro-f1":
            denominator = positives.sum(1) + called.sum(1)
            return np.where(denominator > 0, 2 * tp.sum(1) / np.maximum(denominator, 1), 0.0)
        if self.name == "macro-f1":
            denominator = positives + called
            return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0).mean(1)
        raise ConfigError(f"{self.name} does not score a multi-label competition")

    def beats(self, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
        """Do predictions `a` ((truth, probabilities)) score better than `b` by more than chance? The
        paired bootstrap: `a` must be better in 95% of the same resamples of the rows."""
        rows = np.random.default_rng(0).integers(0, len(a[0]), size=(BOOTSTRAP_RESAMPLES, len(a[0])))
        difference = self.resampled(*a, rows) - self.resampled(*b, rows)
        wins = difference > 0 if self.higher_is_better else difference < 0
        return bool(np.mean(wins[~np.isnan(difference)]) >= 0.95) if (~np.isnan(difference)).any() else False

    def better(self, a: float, b: float) -> bool:
        """Is score a strictly better than score b?"""
        return a > b if self.higher_is_better else a < b

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", higher_is_better=True, submits="label"),
    "macro-f1": Metric("macro-f1", higher_is_better=True, submits="label"),
    "micro-f1": Metric("micro-f1", higher_is_better=True, submits="label"),
    "log-loss": Metric("log-loss", higher_is_better=False, submits="probabilities"),
    "roc-auc": Metric("roc-auc", higher_is_better=True, submits="probabilities"),
    "mean-roc-auc": Metric("mean-roc-auc", higher_is_better=True, submits="probabilities"),
    "qwk": Metric("qwk", higher_is_better=True, submits="label"),
    "map@5": Metric("map@5", higher_is_better=True, submits="top-k", k=5),
}
MULTI_LABEL_METRICS = ("mean-roc-auc", "micro-f1", "macro-f1", "accuracy")
MAP_AT_K = re.compile(r"map@([1-9][0-9]?)")


def get_metric(name: str) -> Metric:
    """A metric by name; map@k for any k from 1 to 99 (map@5 is whale-categorization's)."""
    if name in METRICS:
        return METRICS[name]
    if (match := MAP_AT_K.fullmatch(name)) is not None:
        return Metric(name, higher_is_better=True, submits="top-k", k=int(match.group(1)))
    raise ConfigError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)} (map@k for any k)")


def _arrays(truth: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(truth, dtype=np.int64), np.asarray(probabilities, dtype=np.float64)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros((len(labels), num_classes))
    out[np.arange(len(labels)), labels] = 1.0
    return out
