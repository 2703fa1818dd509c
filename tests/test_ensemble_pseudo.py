"""Ensembling and pseudo-label selection, as pure functions on crafted numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from competition.config import RunConfig
from competition.fitting.ensemble import accuracy, average_logits, average_probabilities, ensemble, greedy_weights
from competition.fitting.pseudo_label import confidence_cap, select_pseudo_labels


def test_logit_ensemble_equals_the_hand_computed_mean():
    logits = torch.tensor([[[1.0, 2.0], [0.0, -4.0]],
                           [[3.0, 0.0], [2.0, 2.0]],
                           [[-1.0, 1.0], [1.0, 5.0]]])
    expected = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    assert torch.allclose(average_logits(logits), expected)
    assert torch.allclose(ensemble(logits, "logits"), expected)


def test_probability_ensemble_averages_softmaxes():
    logits = torch.tensor([[[0.0, 0.0]], [[0.0, 20.0]]])
    assert torch.allclose(average_probabilities(logits).exp(), torch.tensor([[0.25, 0.75]]), atol=1e-6)
    with pytest.raises(ValueError, match="unknown ensemble method 'median'"):
        ensemble(logits, "median")


def test_weighted_logit_mean_uses_the_weights():
    logits = torch.tensor([[[2.0, 0.0]], [[0.0, 4.0]]])
    assert torch.allclose(average_logits(logits, torch.tensor([3.0, 1.0])), torch.tensor([[1.5, 1.0]]))


def test_greedy_selection_weights_the_input_that_is_right_and_drops_the_one_that_is_wrong():
    labels = torch.tensor([0, 1, 0, 1])
    good = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])       # 4/4 right
    bad = -good                                                                # 0/4 right
    weights = greedy_weights(torch.stack([bad, good]), labels, steps=10)
    assert weights.tolist() == [0.0, 1.0]


def test_greedy_selection_mixes_inputs_that_are_right_on_different_rows():
    labels = torch.tensor([0, 0, 0, 0])
    a = torch.tensor([[3.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 1.0]])   # right on rows 0-1, barely wrong on 2-3
    b = torch.tensor([[0.0, 1.0], [0.0, 1.0], [3.0, 0.0], [3.0, 0.0]])   # the mirror image
    weights = greedy_weights(torch.stack([a, b]), labels, steps=10)
    mixed = average_logits(torch.stack([a, b]), weights)
    assert 0 < weights[0] < 1 and accuracy(mixed, labels) == 1.0
    assert abs(weights.sum().item() - 1.0) < 1e-6


def test_accuracy():
    assert accuracy(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 1])) == 0.5


def _logits_for(probabilities):
    return torch.tensor(probabilities).log()


def test_selection_keeps_confident_agreeing_rows_relative_to_the_smoothing_cap():
    cap = confidence_cap(num_classes=2, label_smoothing=0.1)        # 0.95
    assert cap == pytest.approx(0.95)
    seed_a = _logits_for([[0.95, 0.05], [0.60, 0.40], [0.05, 0.95], [0.94, 0.06]])
    seed_b = _logits_for([[0.95, 0.05], [0.60, 0.40], [0.05, 0.95], [0.40, 0.60]])
    members = torch.stack([seed_a, seed_b])
    picked = select_pseudo_labels(average_logits(members), members, threshold=0.95, label_smoothing=0.1)
    # row 0 and 2 are at the cap; row 1 is unsure; row 3's seeds disagree
    assert picked.indices.tolist() == [0, 2] and picked.labels.tolist() == [0, 1]
    assert picked.per_class(2) == [1, 1]


def test_a_fixed_threshold_above_the_cap_would_select_nothing_but_ours_does():
    smoothed = _logits_for([[0.91] + [0.01] * 9] * 3)               # what eps = 0.1, K = 10 trains toward
    picked = select_pseudo_labels(smoothed, smoothed.unsqueeze(0), threshold=0.95, label_smoothing=0.1)
    assert len(picked.indices) == 3
    unsmoothed = select_pseudo_labels(smoothed, smoothed.unsqueeze(0), threshold=0.95, label_smoothing=0.0)
    assert len(unsmoothed.indices) == 0


def test_tta_is_switched_on_only_by_a_significant_out_of_fold_gain():
    from competition.fitting.ensemble import OutOfFold
    labels = torch.zeros(1000, dtype=torch.long)

    def tta_pays(plain: torch.Tensor, tta: torch.Tensor, labels: torch.Tensor) -> bool:
        return OutOfFold(logits=plain, labels=labels).beaten_by(OutOfFold(logits=tta, labels=labels))
    right, wrong = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 2.0])

    def logits(correct: int) -> torch.Tensor:
        return torch.stack([right] * correct + [wrong] * (1000 - correct))

    assert not tta_pays(logits(950), logits(951), labels)        # one image: chance
    assert not tta_pays(logits(950), logits(950), labels)
    assert tta_pays(logits(900), logits(950), labels)            # 50 more right, none lost
    assert not tta_pays(logits(950), logits(900), labels)


def fake_members(root: Path, round_number: int, margins: torch.Tensor, labels: torch.Tensor) -> list:
    """Two folds of a 2-class competition whose members' validation logits put each row's label
    ahead by `margins[row]` (negative: wrong by that much); test logits are zero."""
    from competition.fitting.members import MemberResult, save_logits
    members = []
    for fold, rows in enumerate(torch.arange(len(labels)).chunk(2)):
        out = root / f"round{round_number}" / f"fold{fold}"
        out.mkdir(parents=True)
        logits = torch.zeros(len(rows), 2)
        logits[torch.arange(len(rows)), labels[rows]] = margins[rows]
        save_logits(out, rows, {"val": {"identity": logits}, "test": {"identity": torch.zeros(10, 2)}})
        members.append(MemberResult(name=f"round {round_number} fold {fold}", round=round_number, fold=fold, seed=0,
                                    model="fastnet", val_acc=0.0, val_size=len(rows), best_epoch=1, epochs_run=1,
                                    wall_s=0.0, device="cpu", out_dir=str(out)))
    return members


@pytest.mark.parametrize("earlier_margin, pooled", [(3.0, True), (-3.0, False)])
def test_a_later_round_takes_the_earlier_members_only_where_that_scores_higher_out_of_fold(tmp_path, earlier_margin,
                                                                                          pooled):
    from competition.fitting.executors import InProcess
    from competition.fitting.fit import ensemble_round, with_earlier_members
    from competition.grading.metrics import get_metric
    labels = torch.arange(40) % 2
    # the round's members are right on 36 of 40 rows, narrowly wrong on the first 4; the earlier
    # round's are right on every row (by 3) or wrong on every row (by 3)
    margins = torch.full((40,), 2.0)
    margins[:4] = -0.5
    cfg = RunConfig(models=("fastnet",), ensemble="logits", tta="off")
    metric, lines = get_metric("accuracy"), []
    args = dict(labels=labels, num_classes=2, executor=InProcess(), public=None, metric=metric)
    ens = ensemble_round(cfg, 1, fake_members(tmp_path, 1, margins, labels), use_tta=False, log=lambda s: None,
                         **args)
    earlier = fake_members(tmp_path, 0, torch.full((40,), earlier_margin), labels)
    chosen = with_earlier_members(cfg, 1, ens, earlier, log=lines.append, **args)
    assert ens.cv.value == pytest.approx(0.9)
    # pooled: right on every row (mean margins 1.25 and 2.5), or wrong on every row
    assert (len(chosen.ensembled) == 4) is pooled
    assert chosen.cv.value == pytest.approx(1.0 if pooled else 0.9)
    assert ("takes them" if pooled else "kept alone") in lines[0]
