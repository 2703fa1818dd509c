"""Ensembling: pure functions over the seeds' logits, (S, N, K) -> (N, K)."""

from __future__ import annotations

import torch


def average_logits(logits: torch.Tensor) -> torch.Tensor:
    """Mean of the seeds' logits: (S, N, K) -> (N, K)."""
    return logits.float().mean(dim=0)


def average_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Mean of the seeds' softmax probabilities, returned as log-probabilities so argmax and
    softmax still apply: (S, N, K) -> (N, K)."""
    return logits.float().softmax(dim=-1).mean(dim=0).log()


def ensemble(logits: torch.Tensor, method: str = "logits") -> torch.Tensor:
    """Combine stacked seed logits by `method`: "logits" (the default) or "probs"."""
    if method == "logits":
        return average_logits(logits)
    if method == "probs":
        return average_probabilities(logits)
    raise ValueError(f"unknown ensemble method {method!r}; use 'logits' or 'probs'")


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=-1) == labels).float().mean())
