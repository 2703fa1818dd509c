"""Ensembling: pure functions over stacked logits, (G, N, K) -> (N, K).

`average_logits` and `average_probabilities` weigh every input alike. `greedy_weights` is
Caruana et al.'s ensemble selection (2004): forward selection with replacement, each step
adding the input that most raises accuracy on out-of-fold logits (ties: lower log-loss), so
the weights come from validation predictions and never from test answers. `OutOfFold` is a
round's out-of-fold logits with the scores and choices made on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from ..grading.metrics import Estimate, Metric, accuracy_of, get_metric


def average_logits(logits: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(Weighted) mean of the inputs' logits: (G, N, K) -> (N, K)."""
    logits = logits.float()
    if weights is None:
        return logits.mean(dim=0)
    return torch.einsum("g,gnk->nk", weights.float() / weights.sum(), logits)


def average_probabilities(logits: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(Weighted) mean of the inputs' softmax probabilities, returned as log-probabilities so
    argmax and softmax still apply: (G, N, K) -> (N, K)."""
    return average_logits(logits.float().softmax(dim=-1), weights).clamp_min(1e-12).log()


def ensemble(logits: torch.Tensor, method: str = "logits", weights: torch.Tensor | None = None) -> torch.Tensor:
    """Combine stacked logits: "logits" or "probs" means, or "greedy" (logit mean with `weights`)."""
    if method in ("logits", "greedy"):
        return average_logits(logits, weights)
    if method == "probs":
        return average_probabilities(logits, weights)
    raise ValueError(f"unknown ensemble method {method!r}; use 'logits', 'probs' or 'greedy'")


def greedy_weights(logits: torch.Tensor, labels: torch.Tensor, steps: int = 25,
                   metric: Metric | None = None) -> torch.Tensor:
    """Caruana forward selection with replacement on validation logits (G, N, K): weights (G,)
    summing to 1, each the share of `steps` picks that went to that input. Picks by the
    competition's `metric` (accuracy when none), log-loss breaking ties."""
    picks = torch.zeros(len(logits))
    total = torch.zeros_like(logits[0], dtype=torch.float32)
    truth = labels.numpy()
    for step in range(1, steps + 1):
        candidates = (total + logits.float()) / step                           # (G, N, K)
        if metric is None or metric.name == "accuracy":
            score = (candidates.argmax(-1) == labels).float().mean(-1)         # (G,)
        else:
            sign = 1.0 if metric.higher_is_better else -1.0
            score = torch.tensor([sign * metric.value(truth, probabilities(c)) for c in candidates])
        loss = torch.stack([F.cross_entropy(c, labels) for c in candidates])   # (G,)
        best = int(torch.argmax(score - 1e-6 * loss / (1 + loss.max())))
        picks[best] += 1
        total += logits[best].float()
    return picks / picks.sum()


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=-1) == labels).float().mean())


# ---------------------------------------------------------------- out-of-fold predictions


@dataclass(frozen=True, kw_only=True)
class OutOfFold:
    """Every labelled row's ensemble logits, from the members that validated it: what each choice
    of a round (TTA, weights, temperature, the round itself) is made on. Rows no member validated
    (a holdout's training rows) are NaN and left out of every score."""
    logits: torch.Tensor            # (N, K)
    labels: torch.Tensor            # (N,) class indices; (N, L) 0/1 for a multi-label competition

    @property
    def multi_label(self) -> bool:
        return self.labels.ndim == 2

    @cached_property
    def covered(self) -> torch.Tensor:
        """(N,) bool: the rows some member validated."""
        return ~torch.isnan(self.logits).any(-1)

    @cached_property
    def right(self) -> torch.Tensor:
        """(covered,) bool: whether the ensemble's class is the label (multi-label: every label right,
        each decided at probability 1/2)."""
        if self.multi_label:
            return ((self.logits[self.covered] > 0) == self.labels[self.covered].bool()).all(-1)
        return self.logits[self.covered].argmax(-1) == self.labels[self.covered]

    def accuracy(self) -> Estimate:
        return accuracy_of(self.right.numpy())

    def probabilities(self, temperature: float = 1.0, decision: str = "argmax") -> np.ndarray:
        return probabilities(self.logits[self.covered], temperature, decision, self.multi_label)

    def score(self, metric: Metric, temperature: float = 1.0, decision: str = "argmax") -> Estimate:
        """The competition's metric on the validated rows."""
        return metric.estimate(self.labels[self.covered].numpy(), self.probabilities(temperature, decision))

    def best_decision(self, metric: Metric) -> str:
        """For an ordinal metric (quadratic kappa), the decision with the better OOF score; for F1 of
        several labels an image, thresholds (`best_thresholds`); else argmax. Of tied candidates the
        usual one (argmax) wins."""
        truth = self.labels[self.covered].numpy()
        if self.multi_label and metric.name in ("micro-f1", "macro-f1"):
            return best_thresholds(truth, self.probabilities(), metric)
        if metric.name != "qwk":
            return "argmax"
        values = {d: metric.value(truth, self.probabilities(decision=d)) for d in DECISIONS}
        return max(DECISIONS, key=lambda d: (values[d], d == "argmax"))

    def fit_temperature(self) -> float:
        """The softmax temperature minimising the log-loss (one number, so barely fitted to the
        rows it is judged on). Label smoothing trains under-confident probabilities; this undoes it."""
        x, y = self.logits[self.covered].double(), self.labels[self.covered]
        grid = torch.logspace(-1.5, 1.5, 121, dtype=torch.float64)
        if self.multi_label:
            losses = torch.stack([F.binary_cross_entropy_with_logits(x / t, y.double()) for t in grid])
        else:
            losses = torch.stack([F.cross_entropy(x / t, y) for t in grid])
        return float(grid[int(losses.argmin())])

    def beaten_by(self, other: "OutOfFold") -> bool:
        """`other` wins by more than chance: of the rows the two disagree on (b right only in `other`,
        c right only here), b - c must exceed 2 sqrt(b + c), McNemar's test near the 5% level. A tie
        or a one-image gain is not a win."""
        b, c = int((other.right & ~self.right).sum()), int((self.right & ~other.right).sum())
        return b - c > 2 * (b + c) ** 0.5

    def beaten_on(self, metric: Metric, other: "OutOfFold") -> bool:
        """`other` wins on the competition's metric by more than chance: McNemar's test for
        accuracy, else the paired bootstrap (`Metric.beats`), each side's probabilities at its own
        fitted temperature where the metric reads probabilities."""
        if metric.name == "accuracy":
            return self.beaten_by(other)

        def scored(oof: OutOfFold) -> tuple[np.ndarray, np.ndarray]:
            temperature = oof.fit_temperature() if metric.needs_probabilities else 1.0
            return oof.labels[oof.covered].numpy(), oof.probabilities(temperature)
        return metric.beats(scored(other), scored(self))


def fit_thresholds(truth: np.ndarray, probabilities: np.ndarray, metric: Metric, per_label: bool) -> np.ndarray:
    """The threshold(s) of `THRESHOLDS` with the best score: one for every label, or each label's own
    (the one maximising that label's F1, which is micro-F1's best too where labels do not interact)."""
    labels = truth.shape[1]
    if not per_label:
        values = [metric.value(truth, (probabilities >= t).astype(np.float64)) for t in THRESHOLDS]
        return np.full(labels, THRESHOLDS[int(np.argmax(values))])
    f1 = get_metric("micro-f1")
    return np.array([THRESHOLDS[int(np.argmax([f1.value(truth[:, [c]], (probabilities[:, [c]] >= t).astype(float))
                                              for t in THRESHOLDS]))] for c in range(labels)])


def best_thresholds(truth: np.ndarray, probabilities: np.ndarray, metric: Metric) -> str:
    """One threshold for every label, or each label its own, chosen on OOF. Which of the two is
    chosen by cross-fitting (each fitted on one half of the rows and scored on the other, both
    ways), since per-label thresholds always win on the rows they were fitted on; then fitted on all."""
    def as_decision(thresholds: np.ndarray) -> str:
        return "thresholds " + " ".join(f"{t:.2f}" for t in thresholds)

    def held_out_score(per_label: bool) -> float:
        halves = np.random.default_rng(0).permutation(len(truth)) % 2 == 0
        scores = []
        for fit, score in ((halves, ~halves), (~halves, halves)):
            thresholds = fit_thresholds(truth[fit], probabilities[fit], metric, per_label)
            scores.append(metric.value(truth[score], decide(probabilities[score], as_decision(thresholds))))
        return float(np.mean(scores))

    per_label = held_out_score(True) > held_out_score(False)
    chosen = fit_thresholds(truth, probabilities, metric, per_label)
    return as_decision(chosen) if per_label else f"threshold {chosen[0]:.2f}"


def probabilities(logits: torch.Tensor, temperature: float = 1.0, decision: str = "argmax",
                  multi_label: bool = False) -> np.ndarray:
    """Class probabilities (N, K), float64; under the `expected-class` decision, one-hot rows of it.
    Multi-label: each label's own probability (a sigmoid), not a distribution over the labels."""
    scaled = logits.double() / temperature
    return decide(scaled.sigmoid().numpy() if multi_label else scaled.softmax(-1).numpy(), decision)


# How labels are read off rows of probabilities: the most probable class (several labels an image:
# each from probability 1/2); for an ordinal metric (quadratic kappa), the expected class rounded,
# which a one-class miss costs less; for F1 of several labels an image, "threshold T": each label
# from probability T, as 0/1 rows.
DECISIONS = ("argmax", "expected-class")
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)


def decide(probabilities: np.ndarray, decision: str) -> np.ndarray:
    if decision == "argmax":
        return probabilities
    if decision.startswith("threshold"):        # "threshold T" (every label) or "thresholds T1 T2 ..." (each)
        thresholds = np.array([float(t) for t in decision.split()[1:]])
        return (probabilities >= thresholds[None, :]).astype(np.float64)
    k = probabilities.shape[1]
    expected = np.clip(np.rint(probabilities @ np.arange(k)), 0, k - 1).astype(np.int64)
    return np.eye(k)[expected]


def within_model(logits: torch.Tensor, method: str) -> torch.Tensor:
    """Members of one model (seeds, views) combine by plain mean: of probabilities for "probs",
    else of logits (greedy weights act between models only)."""
    return logits.softmax(-1) if method == "probs" else logits


def as_logits(mean: torch.Tensor, method: str) -> torch.Tensor:
    """A mean of probabilities back to log-probabilities, so argmax and softmax still apply."""
    return mean.clamp_min(1e-12).log() if method == "probs" else mean


def combine(group_logits: torch.Tensor, method: str, weights: torch.Tensor | None) -> torch.Tensor:
    """Models' logits (G, N, K) -> the ensemble's (N, K)."""
    return group_logits[0] if len(group_logits) == 1 else ensemble(group_logits, method, weights)
