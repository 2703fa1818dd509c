"""Pseudo-labelling: pick confident test predictions to train on (pure functions, no answers).

Label smoothing caps a well-trained model's confidence at 1 - eps + eps / K (0.91 for
eps = 0.1, K = 10), so a fixed threshold such as 0.95 would select nothing. The rule here
measures the teacher's confidence as a share of that cap, and also asks every member to agree.
With several labels an image (sigmoid outputs), a row is taken only where every label is confident
(its probability, or one minus it, reaches the threshold's share of the cap) and every member
decides every label as the teacher does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PseudoLabels:
    indices: torch.Tensor       # (P,) rows of the test set, ascending
    labels: torch.Tensor        # (P,) predicted class of each row; (P, L) 0/1 with several labels an image
    confidence: torch.Tensor    # (P,) teacher probability of that class (multi-label: of its least sure label)

    def per_class(self, num_classes: int) -> list[int]:
        if self.labels.ndim == 2:
            return self.labels.sum(0).tolist()
        return torch.bincount(self.labels, minlength=num_classes).tolist()


def confidence_cap(num_classes: int, label_smoothing: float) -> float:
    """The highest probability a label-smoothed model is trained to give: 1 - eps + eps / K."""
    return 1.0 - label_smoothing + label_smoothing / num_classes


def select_pseudo_labels(teacher_logits: torch.Tensor, member_logits: torch.Tensor, threshold: float,
                         label_smoothing: float, multi_label: bool = False) -> PseudoLabels:
    """Rows whose teacher confidence >= threshold * cap and on which every member agrees.

    teacher_logits: (N, K), the round's ensemble (with TTA when it is on);
    member_logits: (S, N, K), each member's test logits.
    """
    num_classes = teacher_logits.shape[-1]
    if multi_label:
        probability = teacher_logits.float().sigmoid()
        labels = (probability > 0.5).long()
        confidence = torch.maximum(probability, 1 - probability).min(dim=-1).values
        agree = ((member_logits > 0).long() == labels).all(dim=-1).all(dim=0)
        # binary targets smoothed towards 1/2: the cap is 1 - eps / 2
        keep = agree & (confidence >= threshold * (1.0 - label_smoothing / 2))
        indices = keep.nonzero().flatten()
        return PseudoLabels(indices, labels[indices], confidence[indices])
    confidence, labels = teacher_logits.float().softmax(dim=-1).max(dim=-1)
    agree = (member_logits.argmax(dim=-1) == labels).all(dim=0)
    keep = agree & (confidence >= threshold * confidence_cap(num_classes, label_smoothing))
    indices = keep.nonzero().flatten()
    return PseudoLabels(indices, labels[indices], confidence[indices])
