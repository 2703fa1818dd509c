"""A finished run's record: everything `publish` measured, frozen, written as metrics.json by
`dataclasses.asdict` and read back as the same types by `report` (and by anyone's notebook).

Nothing in it is graded twice: the scores of every member, round and the submission, the
submission's per-class accuracy and confusion matrix, and the pseudo-labels' precision are
measured once, by `publish`, against the answers. While a competition is sealed, every private
number (and what reads private rows: per-class figures, pseudo-label precision) is left out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .errors import RunStateError
from .grading.metrics import Estimate

RECORD = "metrics.json"


def estimate(values: dict | None) -> Estimate | None:
    return None if values is None else Estimate(**values)


@dataclass(frozen=True, kw_only=True)
class StageScore:
    """One stage's predictions scored as a submission file of the competition's form would be."""
    public: Estimate
    private: Estimate | None            # None while the competition is sealed

    @classmethod
    def from_dict(cls, values: dict) -> "StageScore":
        return cls(public=estimate(values["public"]), private=estimate(values["private"]))


@dataclass(frozen=True, kw_only=True)
class MemberRecord:
    name: str
    round: int
    fold: int
    seed: int
    model: str
    val_acc: float                      # its fold's validation accuracy (plain view, best checkpoint)
    val_size: int
    best_epoch: int
    epochs_run: int
    wall_s: float
    device: str
    precision: str
    folder: str                         # its folder, relative to the run's
    out_of_time: bool = False
    probe_C: float | None = None


@dataclass(frozen=True, kw_only=True)
class RoundRecord:
    round: int
    cv: Estimate                        # the competition's metric out of fold
    oof: Estimate                       # out-of-fold accuracy
    oof_without_tta: float
    oof_with_tta: float
    tta: bool
    weights: dict[str, float]
    train_s: float
    ensemble_s: float
    pseudo_labels: int | None           # how many it trained on (None in round 0)
    pseudo_precision: float | None      # measured after the fact against the answers; None sealed or unscored
    members: tuple[MemberRecord, ...]
    pooled: bool = False                # its ensemble took every earlier round's members too (chosen on OOF)

    @classmethod
    def from_dict(cls, values: dict) -> "RoundRecord":
        return cls(**{**values, "cv": Estimate(**values["cv"]), "oof": Estimate(**values["oof"]),
                      "members": tuple(MemberRecord(**m) for m in values["members"])})


@dataclass(frozen=True, kw_only=True)
class SubmissionRecord:
    """The submission on every test row, public and private: what the report's Submission section shows."""
    overall: Estimate
    accuracy: Estimate
    per_class: tuple[Estimate, ...]     # each true class's accuracy (multi-label: each label's at 1/2)
    confusion: tuple[tuple[int, ...], ...] | None

    @classmethod
    def from_dict(cls, values: dict) -> "SubmissionRecord":
        confusion = values["confusion"]
        return cls(overall=Estimate(**values["overall"]), accuracy=Estimate(**values["accuracy"]),
                   per_class=tuple(Estimate(**e) for e in values["per_class"]),
                   confusion=None if confusion is None else tuple(tuple(row) for row in confusion))


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    run_id: str
    competition: str
    metric: str
    models: tuple[str, ...]
    folds: int
    seeds: int
    cv_kind: str                        # "4-fold out-of-fold", "holdout of 10%"
    fingerprint: str                    # of the prepared split it trained on
    device: str
    executor: str
    wall_s: float
    stage_s: dict[str, float]
    peak_rss_mib: float
    chosen_round: int
    tta: bool
    temperature: float
    decision: str
    sealed: bool
    cv: Estimate                        # the submission's round, out of fold: the score to trust
    oof: Estimate
    rounds: tuple[RoundRecord, ...]
    scores: dict[str, StageScore]       # stage ("round 0 fold 1 seed 0 fastnet", "round 0 ensemble",
                                        # "submission") -> its score; empty without answers
    submission: SubmissionRecord | None     # None without answers, while sealed, or refused by the rules
    rank: int | None = None             # on the leaderboard
    refused: str | None = None          # the rules' reason it was not scored (the day's limit)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = RECORD) -> "RunRecord":
        try:
            values = json.loads(text)
            unknown = set(values) - {f.name for f in fields(cls)}
            if unknown:
                raise KeyError(f"unknown fields {sorted(unknown)}")
            return cls(**{**values, "models": tuple(values["models"]), "cv": Estimate(**values["cv"]),
                          "oof": Estimate(**values["oof"]),
                          "rounds": tuple(RoundRecord.from_dict(r) for r in values["rounds"]),
                          "scores": {k: StageScore.from_dict(v) for k, v in values["scores"].items()},
                          "submission": None if values["submission"] is None
                          else SubmissionRecord.from_dict(values["submission"])})
        except (ValueError, TypeError, KeyError) as e:
            raise RunStateError(f"{source}: not a run record of this version ({type(e).__name__}: {e}); run the "
                                f"competition again to make one") from e

    @classmethod
    def read(cls, run_dir: Path) -> "RunRecord":
        path = Path(run_dir) / RECORD
        if not path.is_file():
            raise RunStateError(f"{path}: no run record; is {Path(run_dir).name} a finished run?")
        return cls.from_json(path.read_text(), source=str(path))

    @property
    def final(self) -> RoundRecord:
        return self.rounds[self.chosen_round]
