"""Training for real, on tiny settings: reproducibility, the whole run, and --resume."""

from __future__ import annotations

import json

import pytest
import torch

from competition import train as train_module
from competition.cli import main
from competition.data import load_public
from competition.grading import score_submission
from competition.leaderboard import read
from competition.prepare import prepare
from competition.run import run
from competition.train import split_public, train_seed

from conftest import write_kaggle_folder

pytestmark = pytest.mark.slow


def test_the_same_seed_gives_identical_logits_on_cpu(tmp_path, tiny_config):
    paths = prepare("digits", tmp_path / "data", log=lambda s: None)
    data = split_public(load_public(paths.public), tiny_config, torch.device("cpu"))
    cfg = tiny_config.replace(epochs=1)
    a = train_seed(data, cfg, seed=3, out_dir=tmp_path / "a")
    b = train_seed(data, cfg, seed=3, out_dir=tmp_path / "b")
    c = train_seed(data, cfg, seed=4, out_dir=tmp_path / "c")
    assert torch.equal(a.test_logits, b.test_logits) and torch.equal(a.val_logits, b.val_logits)
    assert not torch.equal(a.test_logits, c.test_logits)
    assert (tmp_path / "a" / "best.ckpt").is_file()


def test_run_on_digits_writes_a_valid_scored_submission_and_a_leaderboard_row(workspace, capsys):
    code = main(["--root", str(workspace.root), "run", "--competition", "digits", "--epochs", "2",
                 "--seeds", "2", "--pseudo-rounds", "1", "--batch-size", "64"])
    out = capsys.readouterr().out
    assert code == 0
    run_dir = next(workspace.submissions.iterdir())
    _, score = score_submission(workspace.root / "submission.csv", workspace.competition("digits").solution, 10)
    assert (run_dir / "submission.csv").read_bytes() == (workspace.root / "submission.csv").read_bytes()
    assert score.overall.value > 0.5
    [entry] = read(workspace.leaderboard)
    assert entry.competition == "digits" and run_dir.name in entry.run and entry.public == round(score.public.value, 4)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["rounds"][1]["pseudo_labels"] > 0 and 0 <= metrics["rounds"][1]["pseudo_precision"] <= 1
    assert json.loads((run_dir / "config.json").read_text())["seeds"] == 2
    for stage in ("round 0 seed 0", "round 0 ensemble", "round 1 ensemble", "submission"):
        assert stage in out
    assert "precision" in out and "leaderboard: rank 1" in out


def test_resume_after_an_interruption_skips_finished_seeds(workspace, tiny_config, monkeypatch):
    real_train_seed, calls = train_module.train_seed, []

    def interrupted(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated interruption in round 1, seed 1")
        calls.append(args[2])
        return real_train_seed(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_seed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_config, workspace, log=lambda s: None)
    run_id = next(workspace.submissions.iterdir()).name
    finished = sorted(p.parent.relative_to(workspace.submissions / run_id).as_posix()
                      for p in (workspace.submissions / run_id).rglob("result.json"))
    assert finished == ["round0/seed0", "round0/seed1", "round1/seed0"]

    monkeypatch.setattr(train_module, "train_seed", real_train_seed)
    fits = []
    monkeypatch.setattr(train_module.L.Trainer, "fit", lambda self, *a, **k: (fits.append(1), real_fit(self, *a, **k)))
    lines = []
    result = run(tiny_config, workspace, resume=run_id, log=lines.append)
    assert len(fits) == 1                                  # only round 1, seed 1 trains
    assert sum("loaded from an earlier run" in line for line in lines) == 3
    assert len(result.rounds) == 2 and (workspace.root / "submission.csv").is_file()


real_fit = train_module.L.Trainer.fit


def test_a_kaggle_folder_without_answers_gets_a_submission_but_no_score(workspace, tmp_path, capsys):
    folder = write_kaggle_folder(tmp_path / "kaggle", n_train=200, with_solution=False)
    code = main(["--root", str(workspace.root), "run", "--data", str(folder), "--epochs", "1", "--seeds", "1",
                 "--pseudo-rounds", "0"])
    assert code == 0
    assert "cannot be scored" in capsys.readouterr().out
    assert (workspace.root / "submission.csv").read_text().startswith("ImageId,Label\n1,")
    assert not workspace.leaderboard.exists()
