"""Ensembling: pure functions over stacked logits, (G, N, K) -> (N, K).

`average_logits` and `average_probabilities` weigh every input alike. `greedy_weights` is
Caruana et al.'s ensemble selection (2004): forward selection with replacement, each step
adding the input that most raises accuracy on out-of-fold logits (ties: lower log-loss), so
the weights come from validation predictions and never from test answers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
