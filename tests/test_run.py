"""Members, fit and run for real, on tiny settings: reproducibility, the whole run, resume, TTA, EMA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from competition.fitting import members as members_module
from competition.cli import main
from competition.config import RunConfig
from competition.errors import RunStateError
from competition.fitting.fit import fit
from competition.fitting.stopping import StopRequested
from competition.grading.grader import score_submission
from competition.publish import submission_form
from competition.grading.leaderboard import read
from competition.fitting.members import MemberSpec, load_logits, plan_members, train_member
from competition.preparing.prepare import prepare
from competition.pipeline import new_run_dir, open_resumed_run, run, run_record
from competition.workspace import Workspace
from competition.fitting.device import precision_for

from conftest import resolved, silent, write_kaggle_folder
from competition.record import RunRecord


@pytest.mark.slow
def test_a_member_spec_trains_identically_in_a_fresh_process(tmp_path, tiny_config, resolve_for, start_harness,
                                                             restore_threads,
                                                             prepared_digits):
    paths = prepared_digits
    cfg = resolve_for(tiny_config.replace(epochs=1, threads=1), paths)
    [spec, other_fold] = plan_members(cfg, 0, paths.public, tmp_path / "here")
    train_member(spec)
    spec_file = tmp_path / "spec.json"
    moved = MemberSpec(**{**spec.__dict__, "out_dir": str(tmp_path / "fresh")})
    spec_file.write_text(moved.to_json())
    assert MemberSpec.from_json(spec_file.read_text()) == moved
    # a process that has trained nothing: forked from the server that only imported the harness
    member = start_harness("train-member", spec_file)
    assert member.wait(timeout=300) == 0, member.communicate()[0][-3000:]
    here, fresh = load_logits(Path(spec.out_dir)), load_logits(tmp_path / "fresh")
    assert torch.equal(here["val_index"], fresh["val_index"])
    for split in ("val", "test"):
        for view, logits in here["views"][split].items():
            assert torch.equal(logits, fresh["views"][split][view]), (split, view)
    train_member(other_fold)
    assert not torch.equal(here["views"]["test"]["identity"],
                           load_logits(Path(other_fold.out_dir))["views"]["test"]["identity"])


@pytest.mark.slow
def test_fit_scores_every_labelled_image_out_of_fold_and_leaves_the_workspace_alone(tmp_path, tiny_config):
    workspace = Workspace(tmp_path / "ws")
    paths = prepare("digits", workspace.data, log=silent)
    lines: list[str] = []
    result = fit(tiny_config.replace(pseudo_rounds=0), paths.public, tmp_path / "fit", log=lines.append)
    [rnd] = result.rounds
    assert rnd.oof.total == 1437 and not torch.isnan(rnd.oof_logits).any()
    val_rows = torch.cat([load_logits(Path(m.out_dir))["val_index"] for m in rnd.members])
    assert sorted(val_rows.tolist()) == list(range(1437))          # each labelled image validated once
    assert any("out-of-fold accuracy" in line for line in lines)
    assert sorted(p.name for p in workspace.root.iterdir()) == ["data"]   # no submission, leaderboard, runs
    precision = precision_for(result.config, torch.device("cpu"))
    assert f"on cpu in {precision}" in lines[0]
    assert {m.precision for m in rnd.members} == {precision}
    assert {json.loads((Path(m.out_dir) / "result.json").read_text())["precision"] for m in rnd.members} == {precision}


@pytest.mark.slow
def test_run_prints_the_out_of_fold_line_and_the_leaderboard_has_a_cv_column(workspace, capsys):
    code = main(["--root", str(workspace.root), "run", "--time-limit", "none",
                 "--competition", "digits", "--epochs", "3", "--folds", "2",
                 "--pseudo-rounds", "1", "--batch-size", "64"])
    out = capsys.readouterr().out
    assert code == 0
    run_dir = next(workspace.submissions.iterdir())
    paths = workspace.competition("digits")
    _, score = score_submission(workspace.root / "submission.csv", paths.solution, *submission_form(paths))
    assert (run_dir / "submission.csv").read_bytes() == (workspace.root / "submission.csv").read_bytes()
    assert score.overall.value > 0.5
    record = RunRecord.read(run_dir)
    [entry] = read(workspace.leaderboard)
    assert entry.cv == round(record.cv.value, 4) and record.cv.total == 1437
    assert record.scores["submission"].public.value == score.public.value           # graded once, by publish
    assert record.submission.overall.value == score.overall.value
    assert "| CV |" in workspace.leaderboard.read_text()
    assert entry.competition == "digits" and run_dir.name in entry.run and entry.public == round(score.public.value, 4)
    assert [line for line in out.splitlines() if line.startswith("out-of-fold accuracy (2-fold out-of-fold")]
    for stage in ("round 0 fold 0 seed 0 fastnet", "round 0 ensemble", "submission (round"):
        assert stage in out
    assert "leaderboard: rank 1" in out


@pytest.mark.slow
def test_resume_loads_finished_members_and_trains_only_the_rest(workspace, tiny_config, monkeypatch):
    real_train_model, calls = members_module.train_model, []

    def interrupted(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated interruption in round 1, fold 1")
        calls.append(1)
        return real_train_model(*args, **kwargs)

    monkeypatch.setattr(members_module, "train_model", interrupted)
    with pytest.raises(StopRequested):      # an interrupt inside fit ends as a stop, resume hint printed
        run(tiny_config, workspace, log=silent)
    run_id = next(workspace.submissions.iterdir()).name
    finished = sorted(p.parent.relative_to(workspace.submissions / run_id).as_posix()
                      for p in (workspace.submissions / run_id).rglob("result.json"))
    assert finished == ["round0/fold0-seed0-fastnet", "round0/fold1-seed0-fastnet", "round1/fold0-seed0-fastnet"]

    calls.clear()
    monkeypatch.setattr(members_module, "train_model", lambda *a, **k: (calls.append(1), real_train_model(*a, **k))[1])
    lines: list[str] = []
    result = run(tiny_config, workspace, resume=run_id, log=lines.append)
    assert len(calls) == 1                                  # only round 1, fold 1 trains
    assert sum("loaded from an earlier run" in line for line in lines) == 3
    assert len(result.fit.rounds) == 2 and (workspace.root / "submission.csv").is_file()


def test_resume_refuses_a_run_whose_split_or_code_changed_since(workspace, tiny_config):
    paths = prepare("digits", workspace.data, log=silent)
    run_dir = new_run_dir(workspace, tiny_config)
    (run_dir / "config.json").write_text(json.dumps(tiny_config.to_dict()))
    record = run_record(paths)
    (run_dir / "run.json").write_text(json.dumps({**record, "fingerprint": "0123456789abcdef"}))
    with pytest.raises(RunStateError, match="prepared again with another split"):
        open_resumed_run(workspace, run_dir.name)
    (run_dir / "run.json").write_text(json.dumps({**record, "code": "fedcba9876543210"}))
    with pytest.raises(RunStateError, match="was made by other code .*source fedcba9876543210"):
        open_resumed_run(workspace, run_dir.name)
    (run_dir / "run.json").write_text(json.dumps(record))
    assert open_resumed_run(workspace, run_dir.name)[0] == run_dir
    with pytest.raises(RunStateError, match="no run 'nosuch' to resume"):
        open_resumed_run(workspace, "nosuch")


def test_two_runs_started_in_the_same_second_get_two_folders(workspace):
    cfg = RunConfig(competition="digits")
    first, second = new_run_dir(workspace, cfg), new_run_dir(workspace, cfg)
    assert first != second and first.is_dir() and second.is_dir()
    assert second.name.startswith(first.name[:15])


@pytest.mark.parametrize("argv, message", [
    (["--model", "nosuch"], "models: unknown model 'nosuch'"),
    (["--epochs", "0"], "epochs = 0 (auto or >= 1)"),
    (["--competition", "imagenet"], "unknown competition 'imagenet'"),
    (["--folds", "50"], "folds = 50 (1..20)"),
    (["--time-limit", "soon"], "time_limit = 'soon': give a duration such as 90s, 3m"),
    (["--metric", "log-loss"], "--metric: mnist-5k is scored by accuracy; --metric picks the metric of a --data"),
    (["--resume", "some-run", "--epochs", "3"],
     "--resume continues run some-run with its own config.json; drop epochs"),
])
def test_a_bad_setting_fails_in_one_line_before_anything_is_prepared(workspace, capsys, argv, message):
    assert main(["--root", str(workspace.root), "run", *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not workspace.root.exists()


@pytest.mark.slow
def test_tta_adds_views_from_the_checkpoint_without_retraining(tmp_path, tiny_config, monkeypatch, prepared_digits):
    paths = prepared_digits
    cfg = tiny_config.replace(pseudo_rounds=0, epochs=1)
    plain = fit(cfg.replace(tta="off"), paths.public, tmp_path / "run", log=silent)
    monkeypatch.setattr(members_module, "train_model", lambda *a, **k: pytest.fail("a member was retrained"))
    with_tta = fit(cfg.replace(tta="on"), paths.public, tmp_path / "run", log=silent)
    saved = load_logits(Path(with_tta.final.members[0].out_dir))["views"]["test"]
    assert sorted(saved) == sorted(["identity", "shift(1,0)", "shift(-1,0)", "shift(0,1)", "shift(0,-1)",
                                    "shift(1,1)", "shift(1,-1)", "shift(-1,1)", "shift(-1,-1)"])
    assert not plain.final.tta and with_tta.final.tta
    assert not torch.equal(plain.final.test_logits, with_tta.final.test_logits)


@pytest.mark.parametrize("patience, epochs_run", [(None, 8), (1, 2)])
def test_a_member_trains_its_whole_schedule_unless_patience_asks_it_to_stop(tmp_path, patience, epochs_run):
    from competition.fitting.train import TrainingData, train_model
    generator = torch.Generator().manual_seed(0)
    # blank validation images all get one class, half their labels are the other: the validation
    # accuracy is 0.5 at every epoch, so it never improves after the first
    data = TrainingData(train_images=torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=generator),
                        train_labels=torch.arange(64) % 2, val_images=torch.zeros(16, 1, 8, 8, dtype=torch.uint8),
                        val_labels=torch.arange(16) % 2, num_classes=2, mean=(0.5,), std=(0.25,))
    stopping = {} if patience is None else {"patience": patience}       # None: the default
    cfg = resolved(RunConfig(models=("fastnet",), epochs=8, batch_size=16, time_limit="none", **stopping),
                   labelled=64, stored_size=8)
    trained = train_model(data, cfg, "fastnet", seed=0, out_dir=tmp_path / "member")
    assert [row["val_acc"] for row in trained.history] == [0.5] * epochs_run
    assert trained.epochs_run == epochs_run


@pytest.mark.slow
def test_ema_checkpoints_hold_the_averaged_weights(tmp_path, tiny_config, resolve_for, prepared_digits):
    paths = prepared_digits
    cfg = resolve_for(tiny_config.replace(averaging="ema", epochs=2), paths)
    [spec, _] = plan_members(cfg, 0, paths.public, tmp_path / "run")
    train_member(spec)
    saved = torch.load(Path(spec.out_dir) / "best.ckpt", weights_only=False)
    averaged, current = saved["state_dict"], saved["current_model_state"]
    assert averaged.keys() == current.keys()
    assert any(not torch.equal(averaged[k], current[k]) for k in averaged if averaged[k].is_floating_point())


@pytest.mark.slow
def test_a_kaggle_folder_without_answers_gets_a_submission_but_no_score(workspace, tmp_path, capsys):
    folder = write_kaggle_folder(tmp_path / "kaggle", n_train=200, with_solution=False)
    code = main(["--root", str(workspace.root), "run", "--time-limit", "none",
                 "--data", str(folder), "--epochs", "1", "--folds", "2",
                 "--pseudo-rounds", "0"])
    assert code == 0
    assert "cannot be scored" in capsys.readouterr().out
    assert (workspace.root / "submission.csv").read_text().startswith("ImageId,Label\n1,")
    assert not workspace.leaderboard.exists()


@pytest.mark.slow
def test_a_finished_member_whose_pseudo_labels_changed_is_not_reused(tmp_path, tiny_config, resolve_for,
                                                                     prepared_digits):
    paths = prepared_digits
    pseudo = tmp_path / "pseudo_labels.csv"
    pseudo.write_text("ImageId,Label,Confidence\n1,3,0.9\n2,4,0.9\n")
    cfg = resolve_for(tiny_config.replace(epochs=1), paths)
    [spec, _] = plan_members(cfg, 1, paths.public, tmp_path / "run", pseudo)
    assert train_member(spec).pseudo_labels_sha is not None
    assert train_member(spec).resumed                       # same file: loaded
    pseudo.write_text("ImageId,Label,Confidence\n1,5,0.9\n")
    with pytest.raises(RunStateError, match="trained on other pseudo-labels"):
        train_member(spec)


def test_a_warm_round_member_starts_from_the_last_rounds_member_of_its_fold_and_seed(tmp_path, tiny_config):
    cfg = resolved(tiny_config.replace(pseudo_start="warm", seeds=2, epochs=10, warm_epochs=0.3, warm_lr=0.5),
                   stored_size=8)
    assert all(spec.warm_from is None for spec in plan_members(cfg, 0, tmp_path / "public", tmp_path / "run"))
    for spec in plan_members(cfg, 1, tmp_path / "public", tmp_path / "run", tmp_path / "pseudo.csv"):
        assert spec.warm_from == str(tmp_path / "run" / "round0" / f"fold{spec.fold}-seed{spec.seed}-fastnet"
                                     / "best.ckpt")
    assert (cfg.for_round(1).epochs, cfg.for_round(1).lr) == (3, cfg.lr * 0.5)
    assert cfg.for_round(0) == cfg and tiny_config.for_round(1) == tiny_config     # from scratch: unchanged
    assert all(s.warm_from is None for s in plan_members(tiny_config, 1, tmp_path, tmp_path / "run", tmp_path))


@pytest.mark.slow
def test_a_warm_member_begins_with_the_weights_of_the_checkpoint_it_starts_from(tmp_path, tiny_config, resolve_for,
                                                                                 prepared_digits):
    from competition.fitting.data import load_public
    from competition.fitting.members import fold_data
    from competition.fitting.train import train_model
    from competition.fitting.device import training_device
    paths = prepared_digits
    cfg = resolve_for(tiny_config.replace(epochs=2), paths)
    data, _ = fold_data(load_public(paths.public), cfg, 0, training_device())
    train_model(data, cfg, "fastnet", seed=0, out_dir=tmp_path / "first")
    start = torch.load(tmp_path / "first" / "best.ckpt", weights_only=False)["state_dict"]
    # a learning rate too small to move a weight: what the warm member ends with is what it began with
    still = cfg.replace(epochs=1, lr=1e-12, weight_decay=0.0)
    warm = train_model(data, still, "fastnet", seed=1, out_dir=tmp_path / "warm",
                       warm_from=tmp_path / "first" / "best.ckpt")
    cold = train_model(data, still, "fastnet", seed=1, out_dir=tmp_path / "cold")
    weights = {k: v for k, v in warm.module.state_dict().items() if k.endswith("weight")}
    assert all(torch.allclose(v, start[k].to(v.device), atol=1e-6) for k, v in weights.items())
    assert warm.history[0]["val_acc"] > cold.history[0]["val_acc"]
