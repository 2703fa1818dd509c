"""The validation folds: stratified, disjoint, every labelled image validated exactly once."""

from __future__ import annotations

import numpy as np
import pytest

from competition.errors import ConfigError
from competition.preparing.splits import training_rows, validation_folds


def test_k_folds_validate_every_labelled_image_exactly_once_and_keep_class_shares():
    labels = np.repeat(np.arange(4), [40, 30, 20, 10])
    folds = validation_folds(labels, folds=5, val_fraction=0.1, seed=0)
    assert len(folds) == 5
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(len(labels)))
    for val in folds:
        assert np.array_equal(np.bincount(labels[val]), [8, 6, 4, 2])
        assert set(training_rows(len(labels), val)).isdisjoint(val)


def test_one_fold_is_a_stratified_holdout_of_the_val_fraction():
    labels = np.repeat(np.arange(2), 50)
    [val] = validation_folds(labels, folds=1, val_fraction=0.2, seed=0)
    assert len(val) == 20 and np.array_equal(np.bincount(labels[val]), [10, 10])


def test_folds_depend_on_the_seed_only():
    labels = np.repeat(np.arange(3), 20)
    a, b = validation_folds(labels, 3, 0.1, seed=1), validation_folds(labels, 3, 0.1, seed=1)
    c = validation_folds(labels, 3, 0.1, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_more_folds_than_the_rarest_class_has_images_is_a_clear_error():
    labels = np.array([0] * 10 + [1] * 2)
    with pytest.raises(ConfigError, match="3 folds need at least 3 training images of every class; the rarest has 2"):
        validation_folds(labels, 3, 0.1, seed=0)
