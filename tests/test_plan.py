"""The time limit: durations, the plan's rules, the guards that keep a run inside it, and replay."""

from __future__ import annotations

import json
import time

import pytest
import torch

from competition import workspace
from competition.fitting import measure, plan
from competition.cli import main
from competition.config import RunConfig
from competition.errors import ConfigError
from competition.fitting.fit import fit
from competition.fitting.members import fold_data
from competition.fitting.train import train_model
from competition.fitting.device import training_device

from conftest import resolved, silent, write_kaggle_folder

RATES = plan.Rates(train=2000.0, predict=20000.0, member_setup_s=1.0, device="cpu", precision="32-true")
SHAPE = dict(labelled=4000, test=1000, views=9, large_data=False)


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("3m", 180), ("1h", 3600), ("1h30m", 5400),
                                           ("2.5m", 150), ("none", None)])
def test_durations_read_as_seconds(text, seconds):
    assert workspace.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "3", "-1m", "0s", "", "m"])
def test_a_bad_duration_is_a_config_error_naming_the_field(text):
    with pytest.raises(ConfigError, match="time_limit"):
        RunConfig(time_limit=text)


def test_the_auto_limit_is_three_minutes_growing_with_the_labelled_count():
    assert plan.budget_seconds(RunConfig(), 5000) == 180
    assert plan.budget_seconds(RunConfig(), 60_000) == 18 * 60
    assert plan.budget_seconds(RunConfig(time_limit="none"), 60_000) is None


def test_a_longer_limit_plans_a_richer_recipe_and_every_plan_fits_its_limit():
    cfg = resolved(RunConfig(models=("fastnet",), pseudo_rounds=1))
    plans = [plan.plan(cfg, RATES, limit_s=s, budget_s=s, free=frozenset(plan.PLANNED), **SHAPE)
             for s in (20, 60, 180, 600)]
    costs = [plan.estimate_s(p.config, RATES, labelled=4000, test=1000, views=9) for p in plans]
    assert all(p.fits and c <= p.budget_s * plan.SAFETY for p, c in zip(plans, costs))
    members = [p.config.members_per_round * (p.config.pseudo_rounds + 1) * p.config.epochs for p in plans]
    assert members == sorted(members) and members[0] < members[-1]
    assert all(p.config.time_limit == "none" for p in plans)      # the recipe repeats without timing


def test_the_plan_keeps_the_settings_given_and_changes_only_the_rest():
    cfg = resolved(RunConfig(models=("fastnet",), epochs=4, folds=5, pseudo_rounds=0))
    planned = plan.plan(cfg, RATES, limit_s=600, budget_s=600,
                          free=plan.left_to_plan(cfg, frozenset({"epochs", "folds", "pseudo_rounds"})), **SHAPE)
    assert (planned.config.epochs, planned.config.folds, planned.config.pseudo_rounds) == (4, 5, 0)
    assert planned.config.seeds > 1                 # the time left bought more seeds instead
    # without a list of what was given, the settings at their defaults are the free ones
    assert plan.left_to_plan(RunConfig(epochs=4)) == {"folds", "seeds", "pseudo_rounds", "models", "tta", "probe"}
    assert "models" not in plan.left_to_plan(RunConfig(models=("fastnet",)))


WIDE_RATES = plan.Rates(train=1000.0, predict=10000.0, member_setup_s=1.0, device="cpu", precision="32-true")


def _plan_with_width(cfg: RunConfig, seconds: float, free: frozenset[str], probes: list[str]) -> plan.Plan:
    def wider_rates() -> plan.Rates:
        probes.append("fastnet-wide")
        return WIDE_RATES
    return plan.plan(cfg, RATES, limit_s=seconds, budget_s=seconds, free=free, wider=("fastnet-wide",),
                       wider_rates=wider_rates, **SHAPE)


def test_a_long_limit_buys_the_wider_net_costed_at_its_own_measured_rate():
    probes: list[str] = []
    cfg = resolved(RunConfig(models=("fastnet",), epochs=15, pseudo_rounds=1))
    planned = _plan_with_width(cfg, 3600, frozenset(plan.PLANNED), probes)
    assert planned.config.models == ("fastnet-wide",) and probes == ["fastnet-wide"]     # measured once
    assert planned.rates == WIDE_RATES and planned.estimate_s == plan.estimate_s(
        planned.config, WIDE_RATES, labelled=4000, test=1000, views=9)
    assert "fastnet-wide" in planned.line()


def test_time_past_the_wide_rung_buys_epochs_of_one_seed_up_to_twice_the_recipes():
    cfg = resolved(RunConfig(models=("fastnet",), epochs=15, pseudo_rounds=1))
    free = frozenset(plan.PLANNED)
    top = _plan_with_width(cfg, 3600, free, [])
    assert (top.config.seeds, top.config.epochs, top.config.pseudo_rounds) == (1, 30, 1) and top.richest
    cost = lambda epochs: plan.estimate_s(top.config.replace(epochs=epochs), WIDE_RATES, labelled=4000, test=1000,
                                          views=9)
    # 20 epochs with the round do not fit: the round goes before the epochs, and the time buys the most
    # epochs without it (up to twice the recipe's), before the narrow net
    middle = _plan_with_width(cfg, (cost(19) + 1) / plan.SAFETY, free, [])
    assert middle.config.models == ("fastnet-wide",) and middle.config.pseudo_rounds == 0
    assert (middle.config.seeds, middle.config.epochs) == (1, 30)
    no_round = lambda epochs: plan.estimate_s(top.config.replace(epochs=epochs, pseudo_rounds=0), WIDE_RATES,
                                              labelled=4000, test=1000, views=9)
    fewer = _plan_with_width(cfg, (no_round(22) + 1) / plan.SAFETY, free, [])
    assert (fewer.config.models, fewer.config.epochs, fewer.config.pseudo_rounds) == (("fastnet-wide",), 22, 0)
    narrow = _plan_with_width(cfg, (no_round(19) + 1) / plan.SAFETY, free, [])
    assert narrow.config.models == ("fastnet",)
    stretched = _plan_with_width(cfg, (cost(24) + 1) / plan.SAFETY, free, [])
    assert (stretched.config.seeds, stretched.config.epochs) == (1, 24) and not stretched.richest
    # with the epochs given, time is spent on wide seeds at those epochs, and the round is not given up
    given = _plan_with_width(cfg, 3600, free - {"epochs"}, [])
    assert given.config.models == ("fastnet-wide",) and (given.config.seeds, given.config.epochs) == (3, 15)
    one_seed = plan.estimate_s(top.config.replace(epochs=15), WIDE_RATES, labelled=4000, test=1000, views=9)
    kept = _plan_with_width(cfg, (one_seed + 1) / plan.SAFETY, free - {"epochs"}, [])
    assert (kept.config.models, kept.config.seeds, kept.config.pseudo_rounds) == (("fastnet-wide",), 1, 1)


def test_a_short_limit_keeps_the_narrow_net_without_measuring_the_wide_one():
    probes: list[str] = []
    planned = _plan_with_width(resolved(RunConfig(models=("fastnet",), epochs=15, pseudo_rounds=1)), 60,
                               frozenset(plan.PLANNED), probes)
    assert planned.config.models == ("fastnet",) and probes == []        # hopeless at the narrow rate: no probe


def test_a_model_given_is_never_widened():
    probes: list[str] = []
    cfg = resolved(RunConfig(models=("fastnet",), epochs=15, pseudo_rounds=1))
    planned = _plan_with_width(cfg, 3600, plan.left_to_plan(cfg, frozenset({"models"})), probes)
    assert planned.config.models == ("fastnet",) and probes == []


def test_a_limit_too_short_for_any_recipe_gives_the_smallest_and_says_so():
    planned = plan.plan(resolved(RunConfig(models=("fastnet",))), RATES, limit_s=1, budget_s=1,
                          free=frozenset(plan.PLANNED), **SHAPE)
    assert not planned.fits and (planned.config.folds, planned.config.epochs) == (2, 1)
    assert planned.config.tta == "off"      # the views too: the smallest recipe predicts each image once
    assert "members will be cut short" in planned.line()


def test_one_seed_keeps_the_pseudo_round_only_at_20_epochs_and_else_trains_longer_without_it():
    """Out of fold on five sets, 4 folds x 20 epochs without a round beat 4 x 13 with one, and 4 x 25
    without it beat 4 x 15 with it on average, each for less (benchmarks/README.md §20)."""
    cfg = resolved(RunConfig(models=("fastnet",)))

    def cost(epochs: int, rounds: int) -> float:
        return plan.estimate_s(cfg.replace(folds=4, seeds=1, epochs=epochs, pseudo_rounds=rounds), RATES,
                                 labelled=4000, test=1000, views=9)

    between = (cost(19, 1) + 1) / plan.SAFETY       # the round fits at 19 epochs, not at 20
    assert cost(25, 0) < cost(15, 1) < cost(19, 1) < cost(20, 1)
    planned = plan.plan(cfg, RATES, limit_s=between, budget_s=between, free=frozenset(plan.PLANNED), **SHAPE)
    assert (planned.config.folds, planned.config.seeds, planned.config.pseudo_rounds) == (4, 1, 0)
    assert planned.config.epochs == 25                 # the time left on up to two thirds more epochs
    enough = cost(20, 1) / plan.SAFETY + 0.1
    rounded = plan.plan(cfg, RATES, limit_s=enough, budget_s=enough, free=frozenset(plan.PLANNED), **SHAPE)
    assert (rounded.config.pseudo_rounds, rounded.config.epochs) == (1, 20)


def test_a_one_seed_rung_spends_time_left_on_more_epochs():
    """20 epochs beat 15 out of fold on mnist-5k, fashion-5k and digits, with the round and without
    (benchmarks/README.md §18): between one seed's 15 epochs and two seeds' 12 the time goes on epochs;
    without the round up to 25 (§20)."""
    cfg = resolved(RunConfig(models=("fastnet",)))

    def cost(seeds: int, epochs: int) -> float:
        return plan.estimate_s(cfg.replace(folds=4, seeds=seeds, epochs=epochs, pseudo_rounds=1), RATES,
                                 labelled=4000, test=1000, views=9)

    assert cost(1, 20) < cost(2, 12)
    seconds = (cost(1, 20) + 0.1) / plan.SAFETY
    planned = plan.plan(cfg, RATES, limit_s=seconds, budget_s=seconds, free=frozenset(plan.PLANNED), **SHAPE)
    assert (planned.config.seeds, planned.config.pseudo_rounds, planned.config.epochs) == (1, 1, 20)
    kept = plan.plan(cfg, RATES, limit_s=seconds, budget_s=seconds, free=frozenset(plan.PLANNED) - {"epochs"},
                       **SHAPE)
    assert kept.config.epochs == 15                    # epochs given are kept
    without = (plan.estimate_s(cfg.replace(folds=4, seeds=1, epochs=25, pseudo_rounds=0), RATES, labelled=4000,
                                 test=1000, views=9) + 0.1) / plan.SAFETY
    longest = plan.plan(cfg, RATES, limit_s=without, budget_s=without, free=frozenset(plan.PLANNED), **SHAPE)
    assert (longest.config.pseudo_rounds, longest.config.epochs) == (0, 25)   # without the round, two thirds more


def test_a_large_test_set_gives_up_its_test_time_views_before_epochs_below_the_recipe():
    """9 views of 10,000 test images cost a slow CPU a third of a 3m plan: 15 epochs without them beat
    10 with them out of fold on all three proxies (benchmarks/README.md §18), so the views go first.
    A `--tta` given is kept, and where the views are cheap they stay."""
    big = dict(labelled=5000, test=10_000, views=9, large_data=False)
    slow = plan.Rates(train=1800.0, predict=8000.0, member_setup_s=0.5, device="cpu", precision="32-true")
    cfg = resolved(RunConfig(models=("fastnet",)))
    planned = plan.plan(cfg, slow, limit_s=180, budget_s=175, free=frozenset(plan.PLANNED), **big)
    assert planned.config.tta == "off" and planned.config.epochs >= 12
    assert "no test-time views" in planned.line()
    with_views = plan.plan(cfg, slow, limit_s=180, budget_s=175, free=frozenset(plan.PLANNED) - {"tta"}, **big)
    assert with_views.config.tta == "auto" and with_views.config.epochs < planned.config.epochs
    cheap = plan.plan(cfg, slow, limit_s=180, budget_s=175, free=frozenset(plan.PLANNED),
                        **{**big, "labelled": 4000, "test": 1000})
    assert cheap.config.tta == "auto" and cheap.config.epochs >= 15
    assert plan.reserve_s(planned.config, slow, test=10_000, views=9) < \
        plan.reserve_s(with_views.config, slow, test=10_000, views=9)


def test_large_data_plans_spend_no_time_on_a_pseudo_round():
    planned = plan.plan(resolved(RunConfig(models=("fastnet",))), RATES, limit_s=3600, budget_s=3600,
                          free=frozenset(plan.PLANNED), **{**SHAPE, "large_data": True})
    assert planned.config.pseudo_rounds == 0


def test_large_data_gives_up_folds_for_one_full_length_holdout_member_before_it_gives_up_epochs():
    fashion = dict(labelled=60_000, test=10_000, views=9, large_data=True)
    rates = plan.Rates(train=1400.0, predict=2600.0, member_setup_s=5.0, device="cpu", precision="32-true")
    cfg = resolved(RunConfig(models=("fastnet-wide",), epochs=15))
    planned = plan.plan(cfg, rates, limit_s=700, budget_s=690, free=frozenset(plan.PLANNED), **fashion)
    assert (planned.config.folds, planned.config.seeds) == (1, 1) and 10 <= planned.config.epochs < 15
    richer = plan.plan(cfg, rates, limit_s=3 * 3600, budget_s=3 * 3600, free=frozenset(plan.PLANNED), **fashion)
    assert richer.config.folds == 4 and richer.config.epochs >= 12


def test_a_member_past_its_deadline_stops_at_an_epoch_boundary_with_its_best_checkpoint(tmp_path, tiny_config,
                                                                                      resolve_for, prepared_digits):
    paths = prepared_digits
    cfg = resolve_for(tiny_config.replace(epochs=5), paths)
    from competition.fitting.data import load_public
    data, _ = fold_data(load_public(paths.public), cfg, 0, training_device())
    trained = train_model(data, cfg, "fastnet", seed=0, out_dir=tmp_path / "m", deadline=time.time())
    assert trained.out_of_time and trained.epochs_run == 1
    assert (tmp_path / "m" / "best.ckpt").is_file()
    free = train_model(data, cfg, "fastnet", seed=0, out_dir=tmp_path / "n", deadline=time.time() + 3600)
    assert not free.out_of_time and free.epochs_run == 5


def test_a_pseudo_round_that_would_pass_the_deadline_is_not_started(tmp_path, tiny_config, prepared_digits):
    paths = prepared_digits
    lines: list[str] = []
    # one-epoch members are unsure: at 0.1 of the cap every row is confident (10 classes), so the rows
    # the members agree on make a round that the deadline, not the confidence rule, has to stop
    cfg = tiny_config.replace(pseudo_threshold=0.1)
    result = fit(cfg, paths.public, tmp_path / "run", log=lines.append, deadline=time.time())
    assert len(result.rounds) == 1 and all(m.out_of_time and m.epochs_run == 1 for m in result.rounds[0].members)
    assert any(line.startswith("round 1 not started") for line in lines), lines


def test_a_planned_run_prints_its_plan_records_it_and_replays_byte_for_byte(tmp_path, capsys):
    folder = write_kaggle_folder(tmp_path / "comp", n_train=80, n_test=30, side=8)
    root = str(tmp_path / "ws")
    assert main(["--root", root, "run", "--data", str(folder), "--time-limit", "2m", "--epochs", "2",
                 "--seeds", "1", "--model", "fastnet"]) == 0
    out = capsys.readouterr().out
    assert "time limit 2m00s: measuring fastnet" in out and "plan: " in out
    [run_dir] = (tmp_path / "ws" / "submissions").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    plan = json.loads((run_dir / "run.json").read_text())["plan"]
    assert config["time_limit"] == "none" and (config["epochs"], config["seeds"]) == (2, 1)   # given: kept
    assert plan["recipe"]["folds"] == config["folds"] and plan["estimate_s"] <= plan["budget_s"]
    first = (run_dir / "submission.csv").read_bytes()
    assert main(["--root", root, "run", "--config", str(run_dir / "config.json"), "--data", str(folder)]) == 0
    assert "measuring" not in capsys.readouterr().out         # the recorded recipe needs no timing
    [again] = [d for d in (tmp_path / "ws" / "submissions").iterdir() if d != run_dir]
    assert (again / "submission.csv").read_bytes() == first
    assert "plan" not in json.loads((again / "run.json").read_text())


def test_a_run_given_almost_no_time_still_ends_with_a_submission(tmp_path, capsys):
    folder = write_kaggle_folder(tmp_path / "comp", n_train=80, n_test=30, side=8)
    assert main(["--root", str(tmp_path / "ws"), "run", "--data", str(folder), "--time-limit", "1s",
                 "--model", "fastnet"]) == 0
    out = capsys.readouterr().out
    assert "members will be cut short" in out and (tmp_path / "ws" / "submission.csv").is_file()


def test_only_a_model_with_a_wider_sibling_gets_a_wide_rung():
    from competition.fitting.policy import wider_models
    assert wider_models(("fastnet",)) == ("fastnet-wide",)
    assert wider_models(("fastnet", "fastnet-wide")) == ("fastnet-wide",)
    assert wider_models(("resnet-small",)) is None and wider_models(("fastnet-wide",)) is None


def test_the_rate_probe_reads_the_steadiest_epoch_and_prediction_pass(monkeypatch):
    """A process's first member is still warming in its second epoch, and one prediction pass is one
    batch: the probe takes the faster of epochs two and three and the fastest of three timed passes,
    and the share of its threads' CPU time that epoch got, at the run's `--threads`."""
    import types

    clock = [0.0]
    monkeypatch.setattr(measure.time, "perf_counter", lambda: clock[0])
    # the warm member: epochs of 3 s then 1 s, the 1 s one with 1.2 CPU seconds on 2 threads; then the setup one
    epochs = iter([([1.0, 4.0, 5.0], [1.5, 7.5, 8.7]), ([1.0], [2.0])])
    monkeypatch.setattr(measure.torch, "get_num_threads", lambda: 2)
    threads_set: list[int] = []
    monkeypatch.setattr(measure.torch, "set_num_threads", threads_set.append)

    def fake_train(data, cfg, model, *, seed, out_dir, unlabelled):
        assert threads_set == [2]               # the run's threads, before anything trains
        ends, cpu = next(epochs)
        clock[0] += ends[-1]
        return types.SimpleNamespace(history=[{"elapsed_s": e, "cpu_s": c} for e, c in zip(ends, cpu)], module=None)

    passes = iter([0.5, 0.3, 0.1, 0.2])          # a warm pass, then three timed ones
    monkeypatch.setattr(measure, "train_model", fake_train)
    monkeypatch.setattr(measure, "predict", lambda *a, **k: clock.__setitem__(0, clock[0] + next(passes)))
    images = torch.zeros(1024, 1, 8, 8, dtype=torch.uint8)
    public = types.SimpleNamespace(train_images=images[:64], train_labels=torch.arange(64) % 2,
                                   test_images=images, num_classes=2)
    rates = measure.measure_rates(public, resolved(RunConfig(batch_size=16, models=("fastnet",), threads=2),
                                                  stored_size=8),
                                 torch.device("cpu"), steps=4)
    assert rates.predict == pytest.approx(1024 / 0.1)
    # the 1 s epoch held a validation pass over the 64 images at that rate
    assert rates.train == pytest.approx(64 / (1.0 - 64 / (1024 / 0.1)))
    assert rates.cpu_share == pytest.approx(0.6) and rates.contended


def test_a_probe_that_shared_the_cores_says_so_in_the_plan_line_and_its_record():
    fields = dict(train=2000.0, predict=6000.0, member_setup_s=1.0, device="cpu", precision="32-true")
    kwargs = dict(limit_s=180, budget_s=175, labelled=4000, test=1000, views=9, large_data=False,
                  free=frozenset(plan.PLANNED))
    idle = plan.plan(resolved(RunConfig(models=("fastnet",))), plan.Rates(**fields, cpu_share=0.98), **kwargs)
    shared = plan.plan(resolved(RunConfig(models=("fastnet",))), plan.Rates(**fields, cpu_share=0.61), **kwargs)
    on_gpu = plan.plan(resolved(RunConfig(models=("fastnet",))), plan.Rates(**fields | {"device": "cuda"}), **kwargs)
    assert "warning" not in idle.line() and "warning" not in on_gpu.line()
    threads = torch.get_num_threads()
    assert "got 61% of its threads' CPU time" in shared.line()
    assert f"--threads {max(1, round(threads * 0.61))}" in shared.line()
    assert shared.record()["rates"]["cpu_share"] == 0.61 and on_gpu.record()["rates"]["cpu_share"] is None


def test_a_holdout_rung_spends_time_left_on_up_to_a_third_more_epochs_unless_epochs_were_given():
    fashion = dict(labelled=60_000, test=10_000, views=9, large_data=True)
    rates = plan.Rates(train=1400.0, predict=2600.0, member_setup_s=5.0, device="cpu", precision="32-true")
    cfg = resolved(RunConfig(models=("fastnet-wide",), epochs=15))
    # 20m on a float32 CPU: one 15-epoch member takes about half; two do not fit
    planned = plan.plan(cfg, rates, limit_s=1200, budget_s=1190, free=frozenset(plan.PLANNED), **fashion)
    assert (planned.config.folds, planned.config.seeds, planned.config.epochs) == (1, 1, 20)
    assert planned.estimate_s <= 1190 * plan.SAFETY
    # two seeds of 12 epochs validated below one of 15 or 20: a second seed comes only at full length
    longer = plan.plan(cfg, rates, limit_s=1400, budget_s=1400, free=frozenset(plan.PLANNED), **fashion)
    assert (longer.config.seeds, longer.config.epochs) == (1, 20)
    two = plan.plan(cfg, rates, limit_s=2000, budget_s=2000, free=frozenset(plan.PLANNED), **fashion)
    assert two.config.seeds == 2 and two.config.epochs >= 15
    kept = plan.plan(cfg, rates, limit_s=1200, budget_s=1190, free=frozenset(plan.PLANNED) - {"epochs"}, **fashion)
    assert kept.config.epochs == 15
    # small data with the epochs free: one narrow seed of up to twice the recipe's epochs, with the round
    narrow = resolved(RunConfig(models=("fastnet",)))
    small = plan.plan(narrow, RATES, limit_s=10 * 3600, budget_s=10 * 3600, free=frozenset(plan.PLANNED), **SHAPE)
    assert (small.config.seeds, small.config.epochs, small.config.pseudo_rounds) == (1, 2 * narrow.epochs, 1)
    # with the epochs given, the time left buys seeds at the given epochs
    given = plan.plan(narrow, RATES, limit_s=10 * 3600, budget_s=10 * 3600,
                      free=frozenset(plan.PLANNED) - {"epochs"}, **SHAPE)
    assert given.config.seeds > 1 and given.config.epochs == narrow.epochs


def test_the_command_line_time_limit_counts_from_the_process_start():
    """Starting Python and importing torch is the user's wait too: process_start is that moment."""
    import subprocess
    import sys
    code = ("import time; time.sleep(1.5); from competition.clock import process_start; "
            "print(time.perf_counter() - process_start())")
    elapsed = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 1.5 <= elapsed < 30


def test_a_process_start_that_proc_cannot_give_plausibly_is_the_packages_import(monkeypatch):
    from competition import clock

    class OddProc:          # a sandbox whose /proc says the process started at boot, a week ago
        def __init__(self, path: str) -> None:
            self.path = path

        def read_text(self) -> str:
            return "604800.00 0.00" if self.path == "/proc/uptime" else "1 (python) R " + " ".join(["0"] * 49)

    monkeypatch.setattr(clock, "Path", OddProc)
    assert clock.process_start() == clock.IMPORTED_AT

    class NoProc(OddProc):
        def read_text(self) -> str:
            raise FileNotFoundError(self.path)

    monkeypatch.setattr(clock, "Path", NoProc)
    assert clock.process_start() == clock.IMPORTED_AT


def test_a_run_started_earlier_plans_only_the_time_left_of_its_limit(tmp_path, capsys):
    from competition.pipeline import run
    from competition.workspace import Workspace
    folder = write_kaggle_folder(tmp_path / "comp", n_train=80, n_test=30, side=8)
    cfg = RunConfig(models=("fastnet",), time_limit="110s")
    run(cfg, Workspace(tmp_path / "ws"), folder, log=silent, started=time.perf_counter() - 100)
    [run_dir] = (tmp_path / "ws" / "submissions").iterdir()
    recorded = json.loads((run_dir / "run.json").read_text())["plan"]
    assert recorded["limit_s"] == 110 and recorded["budget_s"] <= 10


def test_a_warm_round_is_costed_at_its_share_of_the_epochs():
    cfg = resolved(RunConfig(models=("fastnet",), folds=4, seeds=1, epochs=15, pseudo_rounds=1, tta="off"))
    scratch, warm = (plan.estimate_s(c, RATES, **{k: SHAPE[k] for k in ("labelled", "test", "views")})
                     for c in (cfg, cfg.replace(pseudo_start="warm", warm_epochs=1 / 3)))
    # 4 members, 10 epochs fewer each (15 -> 5): 3,000 training rows and a quarter more pseudo-labelled,
    # and 1,000 validated
    epoch_s = 3000 / 0.75 / RATES.train + 1000 / RATES.predict
    assert scratch - warm == pytest.approx(4 * 10 * epoch_s)


def test_at_the_recipes_epochs_the_views_stay_unless_dropping_them_buys_a_third_more_epochs():
    """25 epochs without the views beat 15 with them out of fold on all three proxies, and 20 without
    about matched 15 with (benchmarks/README.md §18, §20): views that cost five epochs or more go."""
    cfg = resolved(RunConfig(models=("fastnet",)))

    def cost(epochs: int, test: int, views: bool) -> float:
        chosen = cfg.replace(folds=4, seeds=1, epochs=epochs, pseudo_rounds=0, tta="auto" if views else "off")
        return plan.estimate_s(chosen, RATES, labelled=4000, test=test, views=9)

    def plan_for(cost_s: float, test: int) -> RunConfig:
        seconds = cost_s / plan.SAFETY + 0.01
        return plan.plan(cfg, RATES, limit_s=seconds, budget_s=seconds, free=frozenset(plan.PLANNED),
                           **{**SHAPE, "test": test}).config

    big, small = 20_000, 1000
    assert cost(20, big, True) > cost(25, big, False) and cost(16, small, True) < cost(17, small, False)
    costly = plan_for(cost(25, big, False), big)
    assert (costly.pseudo_rounds, costly.tta, costly.epochs) == (0, "off", 25)
    cheap = plan_for(cost(16, small, True), small)
    assert (cheap.pseudo_rounds, cheap.tta, cheap.epochs) == (0, "auto", 16)


def test_a_limit_past_the_ladders_richest_recipe_says_the_rest_is_left_unspent():
    cfg = resolved(RunConfig(models=("fastnet-wide",)))
    generous = plan.plan(cfg, RATES, limit_s=10 * 3600, budget_s=10 * 3600, free=frozenset(plan.PLANNED), **SHAPE)
    assert generous.richest and generous.unspent and "left unspent" in generous.line()
    tight = plan.plan(cfg, RATES, limit_s=60, budget_s=60, free=frozenset(plan.PLANNED), **SHAPE)
    assert not tight.unspent and "left unspent" not in tight.line()
