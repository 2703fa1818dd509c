"""Every benchmark runs on tiny settings and writes its JSON table, so none of them rots."""

from __future__ import annotations

import json
import tempfile

import pandas as pd
import pytest

from benchmarks import (accuracy_levers, accuracy_per_second, efficiency, end_to_end, ensemble_average, fold_levers,
                        inference, probe_rates, refit, scaling, throughput, time_to_accuracy, tta_views)
from benchmarks.photo_folders import digit_recognizer, dogs_vs_cats
from competition.cli import main
from competition.preparing.folders import read_kaggle_folder
from competition.preparing.sources import read_idx_pair

from conftest import write_idx_set, write_kaggle_folder
from competition.record import RunRecord

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _temporary_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def _result(out, name):
    data = json.loads((out / f"{name}.json").read_text())
    assert data["machine"]["cores"] >= 1 and data["rows"] and data["command"].startswith("python -m benchmarks.")
    return data


def test_throughput_compares_harness_and_reference(tmp_path):
    row = throughput.main(["--competition", "digits", "--epochs", "1", "--out", str(tmp_path)])
    assert row["harness_img_s"] > 0 and row["reference_img_s"] > 0
    assert row["ratio"] == pytest.approx(row["harness_img_s"] / row["reference_img_s"])
    _result(tmp_path, "throughput")


def test_accuracy_per_second_reports_both_recipes(tmp_path):
    extra = accuracy_per_second.main(["--competition", "digits", "--ref-epochs", "2", "--epochs", "2",
                                      "--out", str(tmp_path)])
    data = _result(tmp_path, "accuracy_per_second")
    assert len(data["rows"]) == 2 and len(extra["reference_timeline"]) == 2


def test_time_to_accuracy_reports_median_and_spread(tmp_path):
    summary = time_to_accuracy.main(["--competition", "digits", "--seeds", "2", "--epochs", "2",
                                     "--target", "0.0", "1.01", "--out", str(tmp_path)])
    assert summary[0.0]["reached"] == "2/2" and summary[0.0]["min_s"] <= summary[0.0]["median_s"]
    assert summary[1.01] == {"median_s": None, "min_s": None, "max_s": None, "reached": "0/2"}
    assert set(_result(tmp_path, "time_to_accuracy_digits")["targets"]) == {"0.0", "1.01"}
    time_to_accuracy.main(["--competition", "digits", "--seeds", "1", "--epochs", "1", "--batch-size", "64",
                           "--lr", "0.01", "--out", str(tmp_path)])
    assert _result(tmp_path, "time_to_accuracy_digits_batch64_lr0.01")["batch_size"] == 64


def test_end_to_end_times_every_stage(tmp_path):
    extra = end_to_end.main(["--out", str(tmp_path), "--competition", "digits", "--epochs", "1", "--folds", "2",
                             "--pseudo-rounds", "0", "--time-limit", "none"])
    stages = [r["stage"] for r in _result(tmp_path, "end_to_end")["rows"]]
    assert stages[0] == "prepare" and "train round 0 fold 1 seed 0 fastnet" in stages and extra["peak_rss_mib"] > 0
    assert 0 < extra["cv"] <= 1 and extra["cv_kind"] == "2-fold out-of-fold"


def test_inference_and_efficiency(tmp_path):
    assert inference.main(["--competition", "digits", "--seeds", "2", "--repeats", "1", "--views", "2",
                           "--out", str(tmp_path)])["ensemble_img_s"] > 0
    rows = _result(tmp_path, "inference_fastnet")["rows"]
    assert [r["arm"] for r in rows] == list(inference.ARMS) and all(r["images"] == 2 * 360 for r in rows)
    assert rows[-1]["vs_before"] == 1.0
    row = efficiency.main(["--competition", "digits", "--epochs", "1", "--out", str(tmp_path)])
    assert row["train_mflop_per_image"] > 0 and 0 < row["share_of_peak"] < 1
    assert _result(tmp_path, "efficiency")["profile_top_ops"]


def test_levers_measure_each_variant(tmp_path):
    from benchmarks import levers
    rows = levers.main(["--competition", "digits", "--epochs", "1", "--repeats", "2", "--skip-compile",
                        "--ensemble-steps", "4", "--out", str(tmp_path)])
    assert rows[0]["lever"] == "baseline" and rows[0]["vs_baseline"] == 1.0
    assert {r["lever"] for r in rows} >= {"batch 128", "contiguous NCHW", "1 thread",
                                          "3 seeds one after another (plain loop)",
                                          "3 seeds in one vmap pass (plain loop)"}
    assert all(0 < r["min_img_s"] <= r["train_img_s"] <= r["max_img_s"] for r in rows)


def test_probe_rates_reports_each_arms_training_and_predicting_rates_against_the_first(tmp_path, restore_threads):
    rows = probe_rates.main(["--competition", "digits", "--threads", "1", "--repeats", "2", "--steps", "2",
                             "--out", str(tmp_path)])
    assert [r["arm"] for r in rows] == list(probe_rates.ARMS)
    assert all(r["train_img_s"] > 0 and r["predict_img_s"] > 0 and r["threads"] == 1 for r in rows)
    assert all(low <= r["train_img_s"] <= high for r in rows for low, high in [r["train_min_max"]])
    assert rows[0]["train_vs_first"] == 1.0
    _result(tmp_path, f"probe_rates_digits_fastnet_{rows[0]['precision'].split('-')[0]}_threads1")


def test_accuracy_levers_read_oof_only_and_report_each_lever(tmp_path):
    rows = accuracy_levers.main(["--competition", "digits", "--repeats", "2", "--epochs", "1", "--pseudo-rounds", "1",
                                 "--levers", "base", "ema", "--out", str(tmp_path)])
    names = [r["lever"] for r in rows]
    assert names[:2] == ["base, round 0, no TTA", "base, round 0, TTA"] and names[-1] == "ema (round 0)"
    assert all(r["repeats"] == 2 and r["oof_min"] <= r["oof_mean"] <= r["oof_max"] and r["labelled"] == 1437
               for r in rows)
    data = _result(tmp_path, "accuracy_levers_digits")
    assert "public" not in json.dumps(data) and "private" not in json.dumps(data)


def test_accuracy_levers_take_a_kaggle_folder_and_round_levers_keep_their_round(tmp_path, monkeypatch):
    # a confidence rule loose enough for members of a few epochs, so the round always has rows
    lever = {"pseudo_start": "warm", "warm_epochs": 0.5, "pseudo_threshold": 0.1}
    monkeypatch.setitem(accuracy_levers.LEVERS, "loose warm round", lever)
    monkeypatch.setattr(accuracy_levers, "ROUND_LEVERS", accuracy_levers.ROUND_LEVERS | {"loose warm round"})
    folder = write_kaggle_folder(tmp_path / "my-comp", n_train=400, n_test=40, side=20)
    rows = accuracy_levers.main(["--data", str(folder), "--repeats", "1", "--epochs", "8", "--pseudo-rounds", "1",
                                 "--levers", "loose warm round", "ema", "--out", str(tmp_path / "out")])
    names = [r["lever"] for r in rows]
    assert "loose warm round, after pseudo round 1" in names and names[-1] == "ema (round 0)"
    data = _result(tmp_path / "out", "accuracy_levers_my-comp")
    assert len(data["runs"]["loose warm round"][0]["rounds"]) == 2
    assert len(data["runs"]["ema"][0]["rounds"]) == 1


def test_scaling_times_in_process_and_ray_workers(tmp_path):
    pytest.importorskip("ray")
    rows = scaling.main(["--competition", "digits", "--members", "2", "--epochs", "1", "--workers", "1",
                         "--out", str(tmp_path)])
    assert [r["executor"].split(" ")[0] for r in rows] == ["in-process", "ray"]
    assert rows[0]["vs_in_process"] == 1.0 and all(r["members_per_min"] > 0 for r in rows)
    _result(tmp_path, "scaling_digits_epochs1")


def test_refit_scores_the_fold_ensemble_the_refit_and_both_on_a_nested_holdout(tmp_path):
    rows = refit.main(["--competition", "digits", "--repeats", "1", "--epochs", "2", "--out", str(tmp_path)])
    assert [r["arm"] for r in rows] == ["fold ensemble", "refit", "refit + folds"]
    data = _result(tmp_path, "refit_digits")
    assert all(r["holdout_n"] == 288 for r in rows) and data["runs"][0]["refit_epochs"] == 2


def test_fold_levers_compare_changes_on_one_fold(tmp_path):
    rows = fold_levers.main(["--competition", "digits", "--epochs", "2", "--levers", "base", "hflip",
                             "--out", str(tmp_path)])
    assert [(r["lever"], r["tta_views"]) for r in rows] == [("base", 9), ("hflip", 2)]
    assert all(r["val_rows"] == 360 and 0 <= r["val_acc"] <= 1 for r in rows)
    _result(tmp_path, "fold_levers_digits")


def test_tta_views_scores_view_sets_out_of_fold_from_a_finished_run(tmp_path):
    root = tmp_path / "ws"
    assert main(["--root", str(root), "run", "--time-limit", "none",
                 "--competition", "digits", "--epochs", "1", "--folds", "2",
                 "--pseudo-rounds", "0"]) == 0
    run_dir = next((root / "submissions").iterdir())
    rows = tta_views.main([str(run_dir), "--out", str(tmp_path)])
    assert [r["count"] for r in rows] == [1, 5, 9, 9, 13]
    assert all(r["oof_rows"] == 1437 and 0 <= r["oof"] <= 1 for r in rows)
    reference = next(r for r in rows if r["views"] == tta_views.REFERENCE)
    assert reference["right_only_vs_4 straight shifts"] == reference["wrong_only_vs_4 straight shifts"] == 0
    # the default view set, read off the run's own cache, agrees with the benchmark's prediction
    default = next(r for r in rows if "default" in r["views"])
    assert abs(RunRecord.read(run_dir).rounds[0].oof_with_tta - default["oof"]) < 1e-9
    _result(tmp_path, "tta_views_digits")


def test_ensemble_average_compares_logits_and_probabilities_on_oof_of_two_seeds(tmp_path):
    root = tmp_path / "ws"
    assert main(["--root", str(root), "run", "--time-limit", "none",
                 "--competition", "digits", "--epochs", "1", "--folds", "2",
                 "--seeds", "2", "--pseudo-rounds", "0"]) == 0
    run_dir = next((root / "submissions").iterdir())
    rows = ensemble_average.main([str(run_dir), "--out", str(tmp_path)])
    assert [r["average"] for r in rows] == ["logits", "probs"]
    assert all(0 < r["log-loss"] and 0 <= r["accuracy"] <= 1 and 0.5 < r["mean-roc-auc"] <= 1 for r in rows)
    assert rows[0]["log-loss"] != rows[1]["log-loss"]          # two members a row: the averages differ
    _result(tmp_path, "ensemble_average_digits")


def test_semi_supervised_compares_the_levers_on_oof(tmp_path):
    from benchmarks import semi_supervised
    rows = semi_supervised.main(["--competitions", "digits", "--epochs", "1", "--levers", "labelled only",
                                 "fixmatch", "--out", str(tmp_path)])
    assert [r["lever"] for r in rows] == ["labelled only", "fixmatch"]
    assert all(r["oof_low"] <= r["oof"] <= r["oof_high"] and r["labelled"] == 1437 for r in rows)
    _result(tmp_path, "semi_supervised_digits")


def test_time_limits_runs_keep_their_limits_and_record_their_plans(tmp_path):
    from benchmarks import time_limits
    rows = time_limits.main(["--competition", "digits", "--limits", "12s", "--out", str(tmp_path)])
    assert rows[0]["limit_s"] == 12 and rows[0]["folds"] >= 2 and rows[0]["estimate_s"] > 0 and rows[0]["inside"]
    _result(tmp_path, "time_limits_digits")


def test_time_limits_plays_a_kaggle_folder_named_after_it(tmp_path):
    from benchmarks import time_limits
    folder = write_kaggle_folder(tmp_path / "letters-7k", n_train=200, n_test=40)
    rows = time_limits.main(["--data", str(folder), "--limits", "12s", "--out", str(tmp_path)])
    assert rows[0]["competition"] == "letters-7k" and rows[0]["inside"] and 0 <= rows[0]["private"] <= 1
    _result(tmp_path, "time_limits_letters-7k")


def test_contention_reads_a_lower_cpu_share_beside_a_busy_process_on_its_cpu(tmp_path, restore_threads):
    """Pinned to one CPU (so one thread; several would wait on each other for seconds), with a busy
    process beside it on that CPU the probe gets about half its time, and warns."""
    import os

    import torch

    from benchmarks import contention
    from competition.fitting import measure, plan
    if torch.cuda.is_available():
        pytest.skip("on a GPU the probe reports no CPU share")
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})        # the busy process inherits it
    try:
        rows = contention.main(["--competition", "digits", "--beside", "0", "1", "--repeats", "1",
                                "--out", str(tmp_path)])
    finally:
        os.sched_setaffinity(0, allowed)
    idle, busy = rows
    assert idle["threads"] == busy["threads"] == 1
    assert idle["cpu_share"] >= plan.CONTENDED > busy["cpu_share"] and busy["warns"] and not idle["warns"]
    _result(tmp_path, "contention_digits")


def test_digit_recognizer_folder_holds_the_first_images_in_kaggles_form_and_reads_back_with_answers(tmp_path):
    idx = write_idx_set(tmp_path / "idx", n_train=40, n_test=20)
    folder = read_kaggle_folder(digit_recognizer(tmp_path / "idx", tmp_path / "dr", train=30, test=12), log=lambda _: None)
    train_x, train_y = read_idx_pair(idx["train-images-idx3-ubyte"], idx["train-labels-idx1-ubyte"])
    test_x, test_y = read_idx_pair(idx["t10k-images-idx3-ubyte"], idx["t10k-labels-idx1-ubyte"])
    raw = folder.raw
    assert folder.form == "pixel-csv"
    assert (raw.train_images.reshape(30, -1) == train_x[:30].reshape(30, -1)).all()
    assert (raw.train_labels == train_y[:30]).all()
    assert (raw.test_images.reshape(12, -1) == test_x[:12].reshape(12, -1)).all()
    assert (raw.test_labels == test_y[:12]).all() and set(folder.usage) <= {"Public", "Private"}
    with pytest.raises(SystemExit, match="fewer than the 50"):
        digit_recognizer(tmp_path / "idx", tmp_path / "dr2", train=50)


def test_a_few_label_dogs_vs_cats_folder_keeps_a_stratified_share_of_the_photos_not_held_out(tmp_path):
    from test_images import write_dogs_vs_cats
    src = write_dogs_vs_cats(tmp_path / "src", n_per_class=12)
    out = dogs_vs_cats(src, tmp_path / "few", test=6, seed=1, train=8)
    kept = sorted(p.name for p in (out / "train").iterdir())
    answers = pd.read_csv(out / "solution.csv", dtype=str)
    assert len(kept) == 8 and sum(name.startswith("cat.") for name in kept) == 4
    assert len(answers) == 6 and sorted(answers["label"]) == ["cat"] * 3 + ["dog"] * 3
    # the labelled photos and the held-out ones are different files
    held = {(out / "test" / f"{i}.jpg").read_bytes() for i in answers["id"]}
    assert not held & {(out / "train" / name).read_bytes() for name in kept}


def test_the_gpu_check_runs_on_the_cpu_in_its_dry_run_and_writes_every_sections_figures(tmp_path, restore_threads):
    """benchmarks/gpu_check.sh is the device check of the GPU path; here its --dry-run proves the script
    (the CPU, tiny settings): each section's figures, or its recorded reason."""
    from benchmarks import gpu_check
    results = gpu_check.main(["--dry-run", "--out", str(tmp_path), "--sections", "default_run", "throughput",
                              "photo_run"])
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved["dry_run"] and set(saved) >= {"machine", "default_run", "throughput", "photo_run"}
    assert not any("error" in results[name] for name in ("default_run", "throughput", "photo_run")), results
    assert 0 < results["default_run"]["oof"] <= 1 and results["default_run"]["device"] == "cpu"
    rows = results["throughput"]["rows"]
    assert [r["model"] for r in rows][:3] == ["fastnet", "fastnet-wide", "resnet-small"]
    assert all(r["harness_img_s"] > 0 and r["bare_cl_img_s"] > 0 for r in rows if "skipped" not in r)
    assert results["photo_run"]["synthetic"] and any("probe:" in m for m in results["photo_run"]["members"])


def test_probe_levers_score_the_harness_probe_out_of_fold_per_lever(tmp_path, backbone_weights):
    pytest.importorskip("timm")
    from benchmarks import probe_levers
    from test_images import write_dogs_vs_cats
    folder = write_dogs_vs_cats(tmp_path / "dvc", n_per_class=16)
    rows = probe_levers.main(["--data", str(folder), "--weights-dir", str(backbone_weights.parent), "--backbone",
                              "timm/test_efficientnet", "--levers", "base", "float32 features", "x1.15 size",
                              "--out", str(tmp_path)])
    assert [r["lever"] for r in rows] == ["base", "float32 features", "x1.15 size"]
    assert all(0.5 <= r["oof"] <= 1 and r["features_img_s"] > 0 for r in rows)
    # the backbone's own size, and 1.15 times it in multiples of 8
    assert rows[1]["features"] == "float32" and [r["size"] for r in rows] == [160, 160, 184]
    _result(tmp_path, "probe_levers_dvc")


def test_pooled_rounds_replays_each_round_alone_and_with_the_earlier_members(tmp_path):
    from benchmarks import pooled_rounds
    root = tmp_path / "ws"
    # conftest's tiny_config: members good enough that the loose confidence rule leaves the round rows
    assert main(["--root", str(root), "run", "--time-limit", "none", "--competition", "digits", "--epochs", "3",
                 "--batch-size", "64", "--folds", "2", "--pseudo-rounds", "1", "--pseudo-threshold", "0.3"]) == 0
    run_dir = next((root / "submissions").iterdir())
    rows = pooled_rounds.main([str(run_dir), "--out", str(tmp_path)])
    record = RunRecord.read(run_dir)
    assert [r["round"] for r in rows] == [0, 1] and len(record.rounds) == 2
    # replayed from the cached logits, each round's choice and score are the run's own
    assert rows[0]["with_earlier"] is None and rows[1]["takes_earlier"] == record.rounds[1].pooled
    assert rows[1]["with_earlier" if rows[1]["takes_earlier"] else "alone"] == pytest.approx(record.rounds[1].cv.value)
    assert rows[0]["alone"] == pytest.approx(record.rounds[0].cv.value)
    assert rows[-1]["submission_with"] == f"round {record.chosen_round}: {record.cv.value:.4f}"
    _result(tmp_path, "pooled_rounds")
