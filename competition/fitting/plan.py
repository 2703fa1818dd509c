"""The plan of a run that fits the time it is given: what each recipe costs on this machine's measured
rates, and the richest recipe of a fixed ladder that fits. Pure: no torch, no files; the rates come
from `measure.py`.

`--time-limit 3m` (or `time_limit = "3m"`): `measure` trains a tiny real member (and, for a
pretrained backbone, times its frozen features) to get this machine's rates; `plan` then costs
every recipe of the ladder with them and takes the richest one that fits, with the most epochs its
tier allows. The planned recipe is an ordinary config with `time_limit = "none"`: `config.json`
holds it, so `run --config` repeats it with no timing involved.

While training, the time limit is kept by two guards: a pseudo-label round whose estimate does not
fit the time left is not started, and a member whose next epoch would pass the deadline stops at
the epoch boundary with its best checkpoint (at least one epoch, so every run ends with a submission).

The plan changes only the settings left at their defaults (epochs, seeds, folds, pseudo_rounds,
the models where `auto`, the test-time views, the probe): a setting you give is kept, and costed as given.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

from ..config import PROBE_PREFIX, RunConfig
from ..workspace import format_duration, parse_duration

# `auto`: 3 minutes for up to 10,000 labelled images, in proportion above (fashion-mnist's 60,000: 18 minutes)
DEFAULT_S = 180.0
DEFAULT_PER_IMAGES = 10_000
SAFETY = 0.85           # a plan may spend this share of the time left: estimates err, epochs vary
PUBLISH_S = 5.0         # writing, grading and reporting the submission
# Below this share of its threads' CPU time the probe shared the cores: an idle machine gives its
# timed epoch nearly all of it, one busy process beside it about half (`python -m benchmarks.contention`)
CONTENDED = 0.8


def budget_seconds(cfg: RunConfig, labelled: int) -> float | None:
    """The run's time limit in seconds (None: a fixed recipe). auto: `DEFAULT_S` per
    `DEFAULT_PER_IMAGES` labelled images, at least `DEFAULT_S`, on any device."""
    if cfg.time_limit == "auto":
        return DEFAULT_S * max(1.0, labelled / DEFAULT_PER_IMAGES)
    return parse_duration(cfg.time_limit)


@dataclass(frozen=True, kw_only=True)
class Rates:
    """What this machine does with the chosen model, measured by `measure_rates`."""
    train: float            # training images a second (augmentation, forward, backward, step)
    predict: float          # predicted images a second (one view)
    member_setup_s: float   # a member's fixed cost: Trainer, first-epoch warm-up, checkpoints
    device: str
    precision: str
    # on a CPU, the share of its threads' time the timed epoch got (CPU seconds over wall seconds x
    # threads): about 1 on an idle machine, about half where another process keeps the cores busy
    cpu_share: float | None = None
    threads: int = 1            # torch's CPU threads the rates were measured with
    # a probe's: images a second through its frozen backbone (one view), and seconds its head's fit
    # takes per training image (every view a row, C chosen on an inner holdout, then the refit)
    features: float | None = None
    probe_fit_s: float = 0.0

    @property
    def contended(self) -> bool:
        return self.cpu_share is not None and self.cpu_share < CONTENDED

    def threads_got(self) -> int:
        """The threads' worth of CPU the probe got: that many threads no longer wait on each other for
        a core, and trained several times faster beside a busy process."""
        return max(1, round(self.threads * (self.cpu_share or 1.0)))


@dataclass(frozen=True)
class Tier:
    """One shape of recipe: what it sets, the least share of the recipe's epochs it may shrink to and
    the most it may stretch to where time is left; `wide`: trained with the wider sibling of an
    `auto` model (`policy.WIDER`; skipped when there is none); `probe`: a pretrained backbone's
    probe beside the fine-tune ("on") or alone ("only"); `epochs_given`: a rung that spends time on
    seeds, taken only where the user fixed the epochs (where the plan may choose them, one seed of
    more epochs scored higher); `epochs_chosen`: a rung that gives up the round for epochs, taken only
    where the plan chooses them."""
    folds: int
    seeds: int
    pseudo_rounds: int
    least_epochs: float
    most_epochs: float = 1.0
    wide: bool = False
    probe: str | None = None
    epochs_given: bool = False      # climbed only where the epochs are not the plan's to choose
    epochs_chosen: bool = False     # climbed only where they are: a rung that trades the round for epochs


# The ladders, richest rung first. A plan takes the first rung whose least recipe fits, with the most
# epochs that fit: a rung shrinks to `least_epochs` and stretches to `most_epochs` of the recipe's (15).
# Each order below was measured out of fold on several sets (mnist-5k, fashion-5k, a notMNIST-shaped
# folder, digits; Natural Images and Dogs vs. Cats from scratch), never on test answers: the figures
# are in benchmarks/README.md, §14 and §18-§20 for the narrow rungs, §26-§32 for the wide ones.
# - The wider net first, where the model is `auto`: one wide seed a fold with the round scored at or
#   above five narrow seeds in a third to half their time.
# - Above 15 wide epochs time buys epochs, not seeds: one wide seed of 30 epochs with the round beat
#   three of 15 in 60-90% of their time. Past 30 epochs nothing measured paid (seed 001's warps, a
#   second round or seed, 45 epochs, a 1.5x wider net), so the top rung is 20-30 epochs and a longer
#   limit is left unspent.
# - Where 20 wide epochs with the round do not fit, the round goes before the epochs: 24-26 epochs
#   without it beat 14-15 with it. Where both fit they tie (mean -0.01 pp over 9 paired runs), and the
#   round stays.
# - Several seeds a fold only where the user fixed the epochs: where the plan chooses them, one seed of
#   more epochs scored higher (narrow: one seed of 25 epochs beat two of 12 with the round in under
#   half their time). A seeds rung may give up a fifth of its epochs: the one-cycle schedule still anneals.
# - Without the round a rung spends time left on more epochs (25 beat 20 on four of five sets) and
#   gives them up to half the recipe; folds go last, since fewer folds train each member on less.
TIERS = (
    Tier(folds=4, seeds=3, pseudo_rounds=1, least_epochs=0.8, wide=True, epochs_given=True),
    Tier(folds=4, seeds=2, pseudo_rounds=1, least_epochs=0.8, wide=True, epochs_given=True),
    Tier(folds=4, seeds=1, pseudo_rounds=1, least_epochs=4 / 3, most_epochs=2.0, wide=True),    # the top
    Tier(folds=4, seeds=1, pseudo_rounds=0, least_epochs=4 / 3, most_epochs=2.0, wide=True, epochs_chosen=True),
    Tier(folds=4, seeds=1, pseudo_rounds=1, least_epochs=0.8, wide=True),
    Tier(folds=4, seeds=5, pseudo_rounds=1, least_epochs=0.8, epochs_given=True),
    Tier(folds=4, seeds=3, pseudo_rounds=1, least_epochs=0.8, epochs_given=True),
    Tier(folds=4, seeds=2, pseudo_rounds=1, least_epochs=0.8, epochs_given=True),
    Tier(folds=4, seeds=1, pseudo_rounds=1, least_epochs=4 / 3, most_epochs=2.0),
    Tier(folds=4, seeds=1, pseudo_rounds=0, least_epochs=0.5, most_epochs=5 / 3),
    Tier(folds=3, seeds=1, pseudo_rounds=0, least_epochs=0.4),
    Tier(folds=2, seeds=1, pseudo_rounds=0, least_epochs=0.2),
)
# From `policy.LARGE_DATA` labelled images the round is not worth its time (+0.03 pp for 55% of the run
# on fashion-mnist), nor are short members: one 10% holdout with members of the full 15 epochs
# validated at 0.937 against 0.919-0.927 out of fold for 3-4 folds of 7-11 epochs, so the folds go (to
# one holdout) before the epochs do; two seeds only at full length (20 epochs beat two of 12); a
# holdout rung stretches to a third more epochs (§9, §14).
LARGE_DATA_TIERS = (
    Tier(folds=4, seeds=2, pseudo_rounds=0, least_epochs=0.8),
    Tier(folds=4, seeds=1, pseudo_rounds=0, least_epochs=0.8),
    Tier(folds=1, seeds=2, pseudo_rounds=0, least_epochs=1.0, most_epochs=4 / 3),
    Tier(folds=1, seeds=1, pseudo_rounds=0, least_epochs=0.1, most_epochs=4 / 3),
)
# A pretrained backbone: its probe (features once, a linear head per fold: seconds) is the floor, and
# a fine-tune beside it, started from its head, is planned where the time affords the recipe's
# steps. Out of fold the probe's features at the backbone's own size beat every fine-tune a 2-core
# CPU trained in minutes (Dogs vs. Cats: 0.990 against 0.943 for a 12-minute fine-tune at 160 px, §11,
# §21). The pseudo-label round refits the heads with the confident test images' features: cheap, and
# a round that lowers the out-of-fold score ends the rounds.
PRETRAINED_TIERS = (
    Tier(folds=4, seeds=1, pseudo_rounds=1, least_epochs=1.0, probe="on"),
    Tier(folds=4, seeds=1, pseudo_rounds=0, least_epochs=1.0, probe="on"),
    Tier(folds=4, seeds=1, pseudo_rounds=1, least_epochs=1.0, probe="only"),
    Tier(folds=4, seeds=1, pseudo_rounds=0, least_epochs=1.0, probe="only"),
    Tier(folds=2, seeds=1, pseudo_rounds=0, least_epochs=1.0, probe="only"),
)
PLANNED = ("folds", "seeds", "pseudo_rounds", "epochs", "models", "tta", "probe")


@dataclass(frozen=True, kw_only=True)
class Plan:
    config: RunConfig           # the recipe, with time_limit = "none"
    limit_s: float              # the run's time limit
    budget_s: float             # what was left of it to plan (after preparing and measuring)
    estimate_s: float           # training, prediction and publishing, as costed
    rates: Rates
    fits: bool                  # False: even the smallest recipe is estimated over the budget
    richest: bool = False       # the ladder's first rung: more time buys nothing more
    # the nearest richer rung that did not fit: its cheapest recipe and that recipe's cost (at least:
    # a rung skipped before its own rates were measured is costed at a faster bound)
    richer: RunConfig | None = None
    richer_s: float = 0.0

    @property
    def unspent(self) -> bool:
        """The recipe leaves over a third of the time a plan may spend: the ladder ends before the
        limit does (the richest), or the next rung up costs more than the limit affords."""
        return (self.richest or self.richer is not None) and self.estimate_s < 0.66 * self.budget_s * SAFETY

    def line(self) -> str:
        c = self.config
        speed = f"{self.rates.features:,.0f} img/s through the frozen backbone" if c.probe == "only" else \
            f"{self.rates.train:,.0f} img/s training ({self.rates.predict:,.0f} predicting)"
        return (f"plan: {describe(c)}: "
                f"~{format_duration(self.estimate_s)} of the {format_duration(self.budget_s)} left of a "
                f"{format_duration(self.limit_s)} time limit, at {speed} on "
                f"{self.rates.device}, {self.rates.precision}"
                + ("" if self.fits else "; the smallest recipe is over the limit, so members will be cut short")
                + ("; this is the ladder's richest recipe: more seeds, epochs, warps, rounds or a wider net beyond it "
                   "did not pay out of fold where measured (benchmarks/README.md §27, §31), so the rest of the limit "
                   "is left unspent"
                   if self.unspent and self.richest else "")
                + (f"; the next recipe up ({describe(self.richer)}) needs at least ~{format_duration(self.richer_s)} "
                   f"of the ~{format_duration(self.budget_s * SAFETY)} a plan may spend, so the rest of the limit is "
                   f"left unspent" if self.unspent and not self.richest else "")
                + (f"; warning: the measured epoch got {self.rates.cpu_share:.0%} of its threads' CPU time (another "
                   f"process is using the cores, or fewer are allowed than torch's {self.rates.threads} threads), "
                   f"so this plan is smaller than the idle machine's: rerun when it is idle, or with "
                   f"--threads {self.rates.threads_got()}" if self.rates.contended else ""))

    def record(self) -> dict:
        return {"limit_s": self.limit_s, "budget_s": round(self.budget_s, 1),
                "estimate_s": round(self.estimate_s, 1), "fits": self.fits,
                "rates": {"train": round(self.rates.train, 1), "predict": round(self.rates.predict, 1),
                          "member_setup_s": round(self.rates.member_setup_s, 2), "device": self.rates.device,
                          "precision": self.rates.precision,
                          "cpu_share": None if self.rates.cpu_share is None else round(self.rates.cpu_share, 2),
                          "features": None if self.rates.features is None else round(self.rates.features, 1),
                          "probe_fit_s": round(self.rates.probe_fit_s, 6)},
                "recipe": {name: getattr(self.config, name) for name in PLANNED},
                "next_recipe_up": None if self.richer is None else
                {"recipe": describe(self.richer), "estimate_s": round(self.richer_s, 1)}}


def describe(c: RunConfig) -> str:
    """A resolved recipe in a few words: folds x the probe + seeds x models x epochs, rounds, views."""
    rounds = f", {c.pseudo_rounds} pseudo round" + ("s" if c.pseudo_rounds != 1 else "") + \
        (", no test-time views" if c.tta == "off" else "")
    probe = f"the linear probe of {'+'.join(c.models)} at {c.input_size} px" if c.probe in ("on", "only") else ""
    trained = "" if c.probe == "only" else \
        f"{c.seeds} seed(s) x {'+'.join(c.models)} x {c.epochs} epochs" + \
        (f" (at least {c.min_steps} steps)" if c.min_steps else "")
    return f"{c.folds} fold(s) x " + (f"{probe} + {trained}" if probe and trained else probe or trained) + rounds


def left_to_plan(cfg: RunConfig, given: frozenset[str] | None = None) -> frozenset[str]:
    """The settings a plan may change: those not `given` (the command line's flags and config file's
    keys); without that list, those still at their defaults (an unresolved config's). A given one
    is kept as given."""
    if given is not None:
        return frozenset(PLANNED) - given
    default = RunConfig()
    return frozenset(name for name in PLANNED if getattr(cfg, name) == getattr(default, name))


def probe_views(cfg: RunConfig, views: int) -> int:
    """The views a probe's features are computed in: every test-time view, or the image alone when
    the plan gives the views up."""
    return 1 if cfg.tta == "off" else views


def estimate_s(cfg: RunConfig, rates: Rates, *, labelled: int, test: int, views: int) -> float:
    """Seconds `cfg` (resolved) takes on a machine with `rates`: every trained member's epochs (its
    training rows, with pseudo-labelled rows added to each batch in later rounds, and its validation
    pass; a warm round's share of the epochs; at least `min_steps` steps), its predictions, the
    test-time views should TTA be chosen; a probe's features (once) and heads (every round, with a
    round's pseudo-labelled rows); and publishing. Early stopping only shortens it."""
    validated = labelled / cfg.folds if cfg.folds > 1 else labelled * cfg.val_fraction
    trained = labelled - validated
    probes = sum(m.startswith(PROBE_PREFIX) for m in cfg.member_models)
    members = cfg.members_per_round - probes * cfg.folds
    total = PUBLISH_S
    if probes:
        if rates.features is None:
            raise ValueError("a probe's plan needs the rate of its features (measure_rates measures it)")
        total += probes * (labelled + test) * probe_views(cfg, views) / rates.features
    steps_per_epoch = math.ceil(trained / int(cfg.batch_size))
    for round_number in range(int(cfg.pseudo_rounds) + 1):
        extra = 1 / (1 - cfg.pseudo_share) if round_number else 1.0
        # a round's pseudo-labelled rows: at most the test set, about a batch's pseudo share of the rows
        total += probes * cfg.folds * rates.probe_fit_s * probe_views(cfg, views) * \
            (trained + (min(test, trained * extra - trained) if round_number else 0))
        per_epoch = trained * extra / rates.train + validated / rates.predict
        predicting = (validated * views + test) / rates.predict
        tta = 0.0 if cfg.tta == "off" else test * (views - 1) / rates.predict
        epochs = max(cfg.round_epochs(round_number), math.ceil(int(cfg.min_steps) / max(1, steps_per_epoch))
                     if round_number == 0 or cfg.pseudo_start == "scratch" else 0)
        total += members * (rates.member_setup_s + epochs * per_epoch + predicting + tta)
    return total


def reserve_s(cfg: RunConfig, rates: Rates, *, test: int, views: int) -> float:
    """What the run needs after its last epoch: one round's test-time views (its test predictions
    alone where TTA is off; a probe's are in its features), the ensemble, publishing."""
    probes = sum(m.startswith(PROBE_PREFIX) for m in cfg.member_models) * cfg.folds
    return PUBLISH_S + (cfg.members_per_round - probes) * test * (1 if cfg.tta == "off" else views) / rates.predict


def plan(cfg: RunConfig, rates: Rates, *, limit_s: float, budget_s: float, labelled: int, test: int,
         views: int, large_data: bool, free: frozenset[str] | None = None,
         wider: tuple[str, ...] | None = None, wider_rates: Callable[[], Rates] | None = None,
         training_rates: Callable[[], Rates] | None = None) -> Plan:
    """The richest tier whose recipe fits `budget_s`, with the most epochs it fits (up to the recipe's,
    or the tier's stretch of it); only the settings in `free` change (default: those left at their
    defaults). `rates` are those of `cfg.models`; a `wide` tier trains `wider` instead (when "models"
    is free), costed at `wider_rates()`, which measures them: it is called only for a tier that could
    fit at all, once, and its time is spent. With `training_rates`, `rates` hold a probe's measured
    rates and only a bound on training (faster than it can be): a tier with trained members that fits
    at that bound is costed at `training_rates()`, measured once, alike."""
    free = left_to_plan(cfg) if free is None else free
    recipe_epochs = int(cfg.epochs)
    can_widen = "models" in free and wider is not None and wider_rates is not None
    measured: dict[str, Rates] = {}         # rates measured while planning: "wide", "training"

    def measure(kind: str, measuring: Callable[[], Rates]) -> Rates:
        nonlocal spendable
        if kind not in measured:
            probe_start = time.perf_counter()
            measured[kind] = measuring()
            spendable -= (time.perf_counter() - probe_start) * SAFETY
        return measured[kind]

    def recipe(tier: Tier, epochs: int) -> RunConfig:
        values = {"folds": tier.folds, "seeds": tier.seeds, "pseudo_rounds": tier.pseudo_rounds, "epochs": epochs,
                  "probe": tier.probe}
        chosen = cfg.replace(time_limit="none", **{k: v for k, v in values.items() if k in free and v is not None})
        return chosen.replace(models=wider) if tier.wide else chosen

    def cost(c: RunConfig, at: Rates) -> float:
        return estimate_s(c, at, labelled=labelled, test=test, views=views)

    def cheapest(tier: Tier, least: int) -> RunConfig:
        """A tier's least recipe: its fewest epochs, one view where the plan may drop the views."""
        return recipe(tier, least).replace(tta="off") if False in view_choices else recipe(tier, least)

    spendable = budget_s * SAFETY
    tiers = PRETRAINED_TIERS if cfg.fine_tuning and "probe" in free and cfg.probe != "off" else \
        LARGE_DATA_TIERS if large_data else TIERS
    # test-time views (`tta = auto`: predicted on the test set when OOF chose them) go before the
    # recipe's epochs do, and where they cost a third of them: out of fold on mnist-5k, fashion-5k and
    # digits 15 epochs without them beat 10 with them, 20 without about matched 15 with, and 25
    # without beat 15 with
    view_choices = (True, False) if "tta" in free and cfg.tta == "auto" else (True,)
    tiers = [t for t in tiers if not (t.epochs_given and "epochs" in free)
             and not (t.epochs_chosen and "epochs" not in free)]
    applicable = [t for t in tiers if not (t.wide and not can_widen)]      # the ladder this run may climb
    richer: tuple[RunConfig, float] | None = None      # the nearest rung above that did not fit, and its cost
    for tier in tiers:
        least = max(1, math.ceil(tier.least_epochs * recipe_epochs)) if "epochs" in free else recipe_epochs
        tier_rates = rates
        if tier.wide and not can_widen:
            continue
        least_recipe = cheapest(tier, least)
        if tier.wide or (training_rates is not None and tier.probe != "only"):
            # a wider net, or a fine-tune costed so far at its bound, is slower than the rates at hand: a
            # tier whose least recipe does not fit at them never fits, and its own rates are not measured
            if cost(least_recipe, rates) > spendable:
                richer = (least_recipe, cost(least_recipe, rates))
                continue
            tier_rates = measure("wide", wider_rates) if tier.wide else measure("training", training_rates)
        longest = math.floor(tier.most_epochs * recipe_epochs) if "epochs" in free else least
        if tier.probe == "only":        # no trained member: its epochs mean nothing
            least = longest = recipe_epochs
        # the most epochs that fit with the views and without them; the views are kept at the recipe's
        # epochs or more, unless dropping them buys a third of the recipe's epochs more
        counts = range(longest, least - 1, -1)

        def fits(c: RunConfig) -> bool:
            return cost(c, tier_rates) <= spendable

        with_views = most_epochs_fitting([recipe(tier, e) for e in counts], fits)
        without = most_epochs_fitting([recipe(tier, e).replace(tta="off") for e in counts], fits) \
            if False in view_choices else None
        gain = 0 if with_views is None or without is None else without.epochs - with_views.epochs
        views_pay = with_views is not None and (gain == 0 or (with_views.epochs >= min(recipe_epochs, longest)
                                                              and gain < math.ceil(recipe_epochs / 3)))
        chosen = with_views if views_pay or without is None else without
        if chosen is not None:
            return Plan(config=chosen, limit_s=limit_s, budget_s=budget_s, estimate_s=cost(chosen, tier_rates),
                        rates=tier_rates, fits=True, richest=tier is applicable[0] and longest == chosen.epochs,
                        richer=richer[0] if richer else None, richer_s=richer[1] if richer else 0.0)
        richer = (least_recipe, cost(least_recipe, tier_rates))
    smallest = recipe(tiers[-1], 1 if "epochs" in free and tiers[-1].probe != "only" else recipe_epochs)
    if False in view_choices:       # the smallest recipe is one view too
        smallest = smallest.replace(tta="off")
    return Plan(config=smallest, limit_s=limit_s, budget_s=budget_s, estimate_s=cost(smallest, rates), rates=rates,
                fits=False)


def most_epochs_fitting(candidates: list[RunConfig], fits: Callable[[RunConfig], bool]) -> RunConfig | None:
    """The first of `candidates` (most epochs first) that fits, or None."""
    return next((c for c in candidates if fits(c)), None)
