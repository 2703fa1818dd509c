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

from .metrics import Estimate, Metric, accuracy_of


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


def greedy_weights(logits: torch.Tensor, labels: torch.Tensor, steps: int = 25) -> torch.Tensor:
    """Caruana forward selection with replacement on validation logits (G, N, K): weights (G,)
    summing to 1, each the share of `steps` picks that went to that input."""
    picks = torch.zeros(len(logits))
    total = torch.zeros_like(logits[0], dtype=torch.float32)
    for step in range(1, steps + 1):
        candidates = (total + logits.float()) / step                           # (G, N, K)
        correct = (candidates.argmax(-1) == labels).float().mean(-1)           # (G,)
        loss = torch.stack([F.cross_entropy(c, labels) for c in candidates])   # (G,)
        best = int(torch.argmax(correct - 1e-6 * loss / (1 + loss.max())))     # accuracy first, log-loss breaks ties
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
    labels: torch.Tensor            # (N,)

    @cached_property
    def covered(self) -> torch.Tensor:
        """(N,) bool: the rows some member validated."""
        return ~torch.isnan(self.logits).any(-1)

    @cached_property
    def right(self) -> torch.Tensor:
        """(covered,) bool: whether the ensemble's class is the label."""
        return self.logits[self.covered].argmax(-1) == self.labels[self.covered]

    def accuracy(self) -> Estimate:
        return accuracy_of(self.right.numpy())

    def probabilities(self, temperature: float = 1.0) -> np.ndarray:
        return probabilities(self.logits[self.covered], temperature)

    def score(self, metric: Metric, temperature: float = 1.0) -> Estimate:
        """The competition's metric on the validated rows."""
        return metric.estimate(self.labels[self.covered].numpy(), self.probabilities(temperature))

    def fit_temperature(self) -> float:
        """The softmax temperature minimising the log-loss (one number, so barely fitted to the
        rows it is judged on). Label smoothing trains under-confident probabilities; this undoes it."""
        x, y = self.logits[self.covered].double(), self.labels[self.covered]
        grid = torch.logspace(-1.5, 1.5, 121, dtype=torch.float64)
        losses = torch.stack([F.cross_entropy(x / t, y) for t in grid])
        return float(grid[int(losses.argmin())])

    def beaten_by(self, other: "OutOfFold") -> bool:
        """`other` wins by more than chance: of the rows the two disagree on (b right only in `other`,
        c right only here), b - c must exceed 2 sqrt(b + c), McNemar's test near the 5% level. A tie
        or a one-image gain is not a win."""
        b, c = int((other.right & ~self.right).sum()), int((self.right & ~other.right).sum())
        return b - c > 2 * (b + c) ** 0.5


def probabilities(logits: torch.Tensor, temperature: float = 1.0) -> np.ndarray:
    return (logits.double() / temperature).softmax(-1).numpy()


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
