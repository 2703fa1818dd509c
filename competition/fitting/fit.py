"""Fit: rounds of members -> out-of-fold score, ensemble, pseudo-labels. No side effects on the workspace.

One round: plan the members (folds x seeds x models), map `train_member` over them with an
executor, assemble the out-of-fold (OOF) logits of every labelled image, make each choice on
them (TTA on or off, ensemble weights), predict the test set, and pick the pseudo-labels the
next round trains on. A later round's ensemble takes the earlier rounds' members too where that
scores higher out of fold. A round whose OOF accuracy is below the best so far ends the rounds, and
the submission is the round with the best OOF accuracy.

`fit` reads the public folder only and writes only under `run_dir`: a search, a benchmark or a
test calls it; `run` adds publishing (submission, grade, leaderboard, report).
"""

from __future__ import annotations

import logging

import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from . import policy
from ..config import RunConfig
from ..cpus import torch_threads, usable_cpus
from .data import PublicData, load_public, placement
from .ensemble import OutOfFold, as_logits, combine, greedy_weights, probabilities, within_model
from .executors import Executor, InProcess, check_shared_storage
from ..grading.metrics import Estimate, Metric, get_metric
from .members import (MemberResult, MemberSpec, feature_path, load_logits, member_logits, plan_members,
                      predict_member_views, train_member)
from .predict import IDENTITY, View, tta_views
from .probe import (Features, backbone_net, backbone_of, extract_features, feature_bf16, is_probe, load_features,
                    save_features)
from .pseudo_label import PseudoLabels, select_pseudo_labels
from ..workspace import atomic_write_text
from .device import precision_for, training_device

LOG = logging.getLogger("competition")


@dataclass(frozen=True, kw_only=True)
class RoundResult:
    round: int
    members: list[MemberResult]
    oof: Estimate                         # the ensemble's out-of-fold accuracy over the validated rows
    oof_logits: torch.Tensor              # (N_train, K), the ensemble's; rows never validated are NaN
    test_logits: torch.Tensor             # (N_test, K), the ensemble's: what the submission takes
    member_test_logits: torch.Tensor      # (S, N_test, K), each of `ensembled`'s (with TTA when on)
    weights: dict[str, float]             # per model, chosen on OOF when ensemble = greedy
    tta: bool
    oof_plain: float                      # OOF accuracy without TTA ...
    oof_tta: float                        # ... and with it: what TTA buys, whichever was chosen
    cv: Estimate                          # the competition's metric on the OOF predictions (the CV score)
    temperature: float = 1.0              # logits / T before softmax, T fitted on OOF (probability metrics)
    decision: str = "argmax"              # how labels are read off probabilities (ensemble.DECISIONS), on OOF
    # the members the ensemble averages: `members`, then every earlier round's where that scored
    # higher out of fold (`with_earlier_members`)
    ensembled: tuple[MemberResult, ...] = ()
    pseudo: PseudoLabels | None = None    # the pseudo-labels this round trained on
    train_s: float = 0.0
    ensemble_s: float = 0.0

    @property
    def pooled(self) -> bool:
        """The ensemble takes the earlier rounds' members too."""
        return len(self.ensembled) > len(self.members)


@dataclass(frozen=True, kw_only=True)
class FitResult:
    config: RunConfig
    run_dir: Path
    rounds: list[RoundResult]
    chosen: int                           # the round the submission uses (best OOF accuracy)
    classes: tuple[str, ...]
    fingerprint: str                      # of the prepared split the members trained on
    device: str
    executor: str
    metric: str = "accuracy"
    multi_label: bool = False             # several labels an image: sigmoid probabilities, 0/1 label rows
    stage_s: dict[str, float] = field(default_factory=dict)

    @property
    def final(self) -> RoundResult:
        return self.rounds[self.chosen]


    @property
    def probabilities(self) -> np.ndarray:
        """The submission's class probabilities (N_test, K), calibrated on OOF for probability
        metrics; one-hot rows of the chosen class under the `expected-class` decision."""
        return probabilities(self.final.test_logits, self.final.temperature, self.final.decision, self.multi_label)

    @property
    def cv_kind(self) -> str:
        folds = self.config.folds
        return f"{folds}-fold out-of-fold" if folds > 1 else f"holdout of {self.config.val_fraction:.0%}"


def member_line(result: MemberResult, done: int, total: int) -> str:
    status = "loaded from an earlier run" if result.resumed else \
        f"{result.wall_s:.1f}s on {result.device} ({result.precision})"
    cut = ", stopped by the time limit" if result.out_of_time else ""
    how = f"C = {result.probe_C:g}, chosen inside the fold" if result.probe_C is not None else \
        f"best epoch {result.best_epoch}/{result.epochs_run}{cut}"
    return (f"  [{done}/{total}] {result.name}: val acc {result.val_acc:.4f} of {result.val_size:,} "
            f"({how}), {status}; {total - done} to go")


def probe_views(cfg: RunConfig) -> tuple[View, ...]:
    """The views a probe's features are computed in: the test-time views (TTA chooses among them on
    OOF, and training takes each as a row), or the image alone where the plan gave the views up."""
    return IDENTITY if cfg.tta == "off" else tta_views(cfg.augment.hflip == "on")


def ensure_features(cfg: RunConfig, public: PublicData, run_dir: Path, log: Callable[[str], None]) -> None:
    """Compute and cache the features of every probe's backbone, once a run: every fold and round reads
    them (a resumed run too, where they were cached)."""
    device = training_device()
    for backbone in dict.fromkeys(backbone_of(m) for m in cfg.member_models if is_probe(m)):
        path = feature_path(run_dir, backbone)
        views = probe_views(cfg)
        if path.is_file():
            cached = load_features(path)
            if (cached.fingerprint, cached.size, cached.views) == \
                    (public.competition.fingerprint, int(cfg.input_size), tuple(v.name for v in views)):
                log(f"features of {backbone}: cached in {path}")
                continue
        start = time.perf_counter()
        net, mean, std = backbone_net(backbone, cfg, public.image_shape[0])
        bf16 = feature_bf16(cfg, device)
        kwargs = dict(views=views, size=int(cfg.input_size), mean=mean, std=std, device=device, bf16=bf16)
        train = extract_features(net, public.train_images, **kwargs)
        test = extract_features(net, public.test_images, **kwargs)
        seconds = time.perf_counter() - start
        save_features(path, Features(train=train, test=test, views=tuple(v.name for v in views), backbone=backbone,
                                     size=int(cfg.input_size), fingerprint=public.competition.fingerprint,
                                     seconds=seconds))
        images = (len(public.train_images) + len(public.test_images)) * len(views)
        log(f"features of {backbone}: {train.shape[-1]:,} a view, {len(views)} view(s) of "
            f"{len(public.train_images) + len(public.test_images):,} images at {cfg.input_size} px in {seconds:.0f}s "
            f"({images / seconds:,.0f} images/s, {'bf16' if bf16 else 'float32'} on {device.type})")


def grouped_oof(members: list[MemberResult], views: tuple[View, ...], num_rows: int, num_classes: int,
                models: tuple[str, ...], method: str) -> torch.Tensor:
    """Per model, the mean over views and seeds of each row's validation logits: (G, N, K), NaN
    where no member validated the row."""
    total = torch.zeros(len(models), num_rows, num_classes)
    count = torch.zeros(len(models), num_rows, 1)
    for m in members:
        cached = load_logits(Path(m.out_dir))
        saved = within_model(torch.stack([cached["views"]["val"][v.name] for v in views]), method).mean(0)
        rows = cached["val_index"]
        g = models.index(m.model)
        total[g, rows] += saved
        count[g, rows] += 1
    return as_logits(total / count, method)      # 0/0 -> NaN marks rows outside every fold's validation


def grouped_test(members: list[MemberResult], member_test: torch.Tensor, models: tuple[str, ...],
                 method: str) -> torch.Tensor:
    """Per model, the mean of its members' test logits (S, N, K) -> (G, N, K)."""
    groups = [within_model(member_test[[i for i, m in enumerate(members) if m.model == model]], method).mean(0)
              for model in models]
    return as_logits(torch.stack(groups), method)


def write_pseudo_labels(path: Path, pseudo: PseudoLabels) -> None:
    labels = pseudo.labels.numpy()
    if labels.ndim == 2:        # several labels an image: the indices of the labels it has, space-separated
        labels = [" ".join(str(k) for k in np.flatnonzero(row)) for row in labels]
    frame = pd.DataFrame({"ImageId": pseudo.indices.numpy() + 1, "Label": labels,
                          "Confidence": pseudo.confidence.numpy().round(5)})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def fit(cfg: RunConfig, public_dir: Path, run_dir: Path, executor: Executor | None = None,
        log: Callable[[str], None] = LOG.info, deadline: float | None = None) -> FitResult:
    """Train every round's members and ensemble them; reads `public_dir` only, writes under `run_dir`.
    `deadline` (a `time.time()`, from the run's time limit): members stop at the epoch boundary
    before it, and a pseudo-label round that would not end before it is not started."""
    executor = executor or InProcess()
    public = load_public(public_dir)
    metric = get_metric(public.competition.metric)
    labels, k = public.train_labels, public.num_classes
    channels, height, width = public.image_shape
    cfg = policy.resolve_for(cfg, public)
    device = training_device()
    where = {"device": f"resident on {device.type}" if device.type == "cuda" else "in memory",
             "host": "batched from pinned host memory (too big for the GPU)"}[placement(public.train_images, device)]
    colour = "grey" if channels == 1 else f"{channels}-channel"
    # an executor names its own threads; in this process a member takes the run's (cpus.py)
    threads = (f", {torch_threads(cfg.threads)} thread(s) ({usable_cpus()} CPU(s) usable)"
               if device.type == "cpu" and isinstance(executor, InProcess) else "")
    log(f"{public.name}: {len(labels):,} labelled / {len(public.test_images):,} test {colour} images of "
        f"{height}x{width}, {k} {'labels (several an image)' if public.competition.multi_label else 'classes'}, "
        f"scored by {metric.name}; {members_phrase(cfg)} = {cfg.members_per_round} members a round, up to "
        f"{cfg.pseudo_rounds} "
        f"pseudo-label round(s), on {device.type} in "
        f"{precision_for(cfg, device)} (images {where}), {executor.name}" + threads)
    ensure_features(cfg, public, run_dir, log)
    rounds: list[RoundResult] = []
    pseudo, pseudo_path, use_tta = None, None, None
    for round_number in range(cfg.pseudo_rounds + 1):
        if deadline is not None and rounds:
            # measured, not modelled: round 0's time with the pseudo-labelled rows added to each batch
            # (for a warm round's share of the epochs)
            needed = rounds[0].train_s / (1 - cfg.pseudo_share) * cfg.round_epochs(round_number) / cfg.epochs
            if time.time() + needed > deadline:
                log(f"round {round_number} not started: it needs ~{needed:.0f}s and the time limit leaves "
                    f"{max(deadline - time.time(), 0):.0f}s")
                break
        start = time.perf_counter()
        specs = plan_members(cfg, round_number, public_dir, run_dir, pseudo_path, deadline)
        trained = any(not is_probe(s.model) for s in specs)
        extra = "" if pseudo is None else (f", with {len(pseudo.indices):,} pseudo-labelled test images"
                                           + (f" ({cfg.pseudo_share:.0%} of each batch)" if trained else ""))
        warm = " from the last round's members" if any(s.warm_from for s in specs) else ""
        epochs = f", up to {cfg.round_epochs(round_number)} epochs{warm}" if trained else ""
        log(f"round {round_number}: {len(specs)} members{epochs}{extra}")
        done = []

        def progress(spec: MemberSpec, result: MemberResult) -> None:
            check_shared_storage(Path(result.out_dir))
            done.append(result)
            log(member_line(result, len(done), len(specs)))

        # probes first: a fine-tune beside one starts from the head it fitted on its fold
        members = [result for batch in ([s for s in specs if is_probe(s.model)], [s for s in specs
                                                                                  if not is_probe(s.model)])
                   if batch for result in executor.map(train_member, batch, on_result=progress, public=public)]
        ensemble_start = time.perf_counter()
        ens = ensemble_round(cfg, round_number, members, labels, k, use_tta, executor, public, metric, log)
        use_tta = ens.tta
        if rounds:
            ens = with_earlier_members(cfg, round_number, ens, [m for r in rounds for m in r.members], labels, k,
                                       executor, public, metric, log)
        best = best_round(rounds, metric) if rounds else None
        next_pseudo, stop = None, None
        if best is not None and metric.better(rounds[best].cv.value, ens.cv.value):
            stop = (f"  round {round_number} worsened the out-of-fold {metric.name} ({ens.cv.value:.4f} against "
                    f"{rounds[best].cv.value:.4f}): no further rounds")
        elif round_number < cfg.pseudo_rounds:
            next_pseudo = select_pseudo_labels(ens.test_logits, ens.member_test_logits, cfg.pseudo_threshold,
                                               cfg.label_smoothing, multi_label=public.competition.multi_label)
            if not len(next_pseudo.indices):
                stop = "  no test image passed the confidence rule: no further rounds"
        rounds.append(RoundResult(round=round_number, members=members, pseudo=pseudo,
                                  train_s=ensemble_start - start, ensemble_s=time.perf_counter() - ensemble_start,
                                  **{f.name: getattr(ens, f.name) for f in fields(ens)}))
        if stop is not None:
            log(stop)
            break
        if next_pseudo is not None:
            pseudo, pseudo_path = next_pseudo, Path(run_dir) / f"round{round_number + 1}" / "pseudo_labels.csv"
            write_pseudo_labels(pseudo_path, pseudo)
            log(f"  pseudo-labels for round {round_number + 1}: {len(pseudo.indices):,} test images "
                f"(per class {pseudo.per_class(k)})")
    chosen = best_round(rounds, metric)
    log(f"the submission takes round {chosen}: the best out-of-fold {metric.name}, {rounds[chosen].cv.value:.4f}")
    return FitResult(config=cfg, run_dir=Path(run_dir), rounds=rounds, chosen=chosen, classes=public.classes,
                     fingerprint=public.competition.fingerprint, device=device.type, executor=executor.name,
                     metric=metric.name, multi_label=public.competition.multi_label)


def with_earlier_members(cfg: RunConfig, round_number: int, ens: RoundEnsemble, earlier: list[MemberResult],
                         labels: torch.Tensor, num_classes: int, executor: Executor, public: PublicData,
                         metric: Metric, log: Callable[[str], None]) -> RoundEnsemble:
    """A later round's ensemble, or the ensemble of its members and every earlier round's where that
    scores higher out of fold. Free: every member's logits are already cached. The earlier rounds'
    members learnt without the pseudo-labels, so they err differently: out of fold, pooling round 0's
    members with round 1's raised the round's accuracy on fashion-5k (+0.42 pp at 30 epochs) and a
    notMNIST-shaped folder (+0.50 pp at its 3m plan, +0.27 at 10m), and lowered it on others
    (benchmarks/README.md §27), so it is a choice made on OOF, as the test-time views are."""
    pooled = ensemble_round(cfg, round_number, ens.ensembled + tuple(earlier), labels, num_classes, ens.tta,
                            executor, public, metric, log=lambda line: None)
    better = metric.better(pooled.cv.value, ens.cv.value)
    log(f"  with the {len(earlier)} earlier member(s) too: out-of-fold {metric.name} {pooled.cv.value:.4f} against "
        f"{ens.cv.value:.4f} alone: " + ("the round's ensemble takes them" if better else "kept alone"))
    return pooled if better else ens


def members_phrase(cfg: RunConfig) -> str:
    """'4 fold(s) x 1 seed(s) x fastnet', a probe's members as '4 fold(s) x probe:timm/x'."""
    return " + ".join(f"{cfg.folds} fold(s) x " + (m if is_probe(m) else f"{cfg.seeds} seed(s) x {m}")
                      for m in cfg.member_models)


def best_round(rounds: list[RoundResult], metric: Metric) -> int:
    """The round with the best OOF score; of tied rounds the latest, which has seen the most unlabelled data."""
    sign = 1 if metric.higher_is_better else -1
    return max(range(len(rounds)), key=lambda i: (sign * rounds[i].cv.value, i))


@dataclass(frozen=True, kw_only=True)
class RoundEnsemble:
    """What a round's members make together: the OOF logits, the choices made on them, the test logits."""
    oof: Estimate
    oof_logits: torch.Tensor
    test_logits: torch.Tensor
    member_test_logits: torch.Tensor
    weights: dict[str, float]
    tta: bool
    oof_plain: float
    oof_tta: float
    cv: Estimate
    temperature: float
    decision: str
    ensembled: tuple[MemberResult, ...]


def ensemble_round(cfg: RunConfig, round_number: int, members: Sequence[MemberResult], labels: torch.Tensor,
                   num_classes: int, use_tta: bool | None, executor: Executor, public: PublicData,
                   metric: Metric, log: Callable[[str], None]) -> RoundEnsemble:
    """OOF logits, the TTA and weight choices made on them, and the test logits they imply."""
    models = cfg.member_models
    # mirrored views where training mirrored images: the competition allows it and hflip was on; none
    # where the plan gave them up (a probe's features have the image alone then)
    test_views = IDENTITY if cfg.tta == "off" else tta_views(cfg.augment.hflip == "on")
    plain = grouped_oof(members, IDENTITY, len(labels), num_classes, models, cfg.ensemble)
    tta_groups = grouped_oof(members, test_views, len(labels), num_classes, models, cfg.ensemble)
    weights = None
    if cfg.ensemble == "greedy" and len(models) > 1:
        covered = OutOfFold(logits=plain[0], labels=labels).covered
        weights = greedy_weights(plain[:, covered], labels[covered], metric=metric)
    plain_oof = OutOfFold(logits=combine(plain, cfg.ensemble, weights), labels=labels)
    tta_oof = OutOfFold(logits=combine(tta_groups, cfg.ensemble, weights), labels=labels)
    if use_tta is None:     # decided once, in round 0, on OOF logits, by the competition's metric
        pays = plain_oof.beaten_on(metric, tta_oof)
        use_tta = cfg.tta == "on" or (cfg.tta == "auto" and pays)
        log(f"  test-time augmentation {'on' if use_tta else 'off'}: out-of-fold {metric.name} "
            f"{tta_oof.score(metric).value:.4f} with {len(test_views)} views, {plain_oof.score(metric).value:.4f} "
            f"without ({'set by tta = ' + cfg.tta + ', given or planned' if cfg.tta != 'auto' else 'chosen on OOF'}; "
            f"the gain is {'' if pays else 'not '}significant)")
    views = test_views if use_tta else IDENTITY
    if use_tta:
        executor.map(predict_member_views_of, [(m.out_dir, views) for m in members], public=public)
    member_test = torch.stack([member_logits(Path(m.out_dir), "test", views).mean(0) for m in members])
    groups = grouped_test(members, member_test, models, cfg.ensemble)
    chosen = tta_oof if use_tta else plain_oof
    oof = chosen.accuracy()
    weight_map = {m: float(w) for m, w in zip(models, weights if weights is not None
                                              else torch.full((len(models),), 1 / len(models)))}
    temperature = chosen.fit_temperature() if metric.needs_probabilities else 1.0
    decision = chosen.best_decision(metric)
    cv = chosen.score(metric, temperature, decision)
    log(f"  round {round_number} ensemble of {len(members)}: out-of-fold accuracy {oof.value:.4f} "
        f"(95% CI {oof.low:.4f}-{oof.high:.4f}, {oof.correct:,}/{oof.total:,} labelled images)"
        + ("" if metric.name == "accuracy" else f"; out-of-fold {metric.name} {cv}")
        + ("" if temperature == 1.0 else f"; softmax temperature {temperature:.3f} fitted on OOF")
        + ("" if decision == "argmax" else f"; labels by the {decision}, chosen on OOF")
        + ("" if len(models) == 1 else f"; weights {weight_map}"))
    return RoundEnsemble(oof=oof, oof_logits=chosen.logits, test_logits=combine(groups, cfg.ensemble, weights),
                         member_test_logits=member_test, weights=weight_map, tta=use_tta,
                         oof_plain=plain_oof.accuracy().value, oof_tta=tta_oof.accuracy().value, cv=cv,
                         temperature=temperature, decision=decision, ensembled=tuple(members))


def predict_member_views_of(job: tuple[str, tuple[View, ...]], public: PublicData | None = None) -> str:
    """Executor-friendly wrapper: one item argument."""
    out_dir, views = job
    return predict_member_views(Path(out_dir), views, public=public)
