"""The command line as a user meets it: help, list, prepare, score, leaderboard, errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from competition.cli import build_parser, main

from conftest import cli, write_kaggle_folder

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_every_subcommand_with_one_line_each():
    out = subprocess.run([sys.executable, "-m", "competition", "--help"], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    for command in ("list", "prepare", "run", "score", "leaderboard"):
        assert re.search(rf"^ +{command} +\S", out, re.M), f"{command} has no one-line help"


def test_the_cli_and_the_commands_that_do_not_train_load_without_torch():
    """`--help`, `score`, `invite` and `submit` start in about a second: torch (and Lightning) cost
    a fresh interpreter seconds more, so only training imports them."""
    probe = "import sys, competition.cli, competition.preparing.prepare, competition.grading.scoring; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "False"


def test_list_shows_every_competition_with_size_and_availability(workspace, capsys):
    assert cli(workspace, "list") == 0
    out = capsys.readouterr().out
    for name in ("mnist-5k *", "digits", "mnist", "fashion-mnist", "notmnist"):
        assert name in out
    assert "1,797" in out and "8x8" in out


def test_scoring_the_sample_submission_prints_a_real_score_and_adds_a_row(workspace, capsys):
    assert cli(workspace, "prepare", "digits") == 0
    sample = workspace.competition("digits").public / "sample_submission.csv"
    assert cli(workspace, "score", str(sample), "--competition", "digits") == 0
    out = capsys.readouterr().out
    zeros = (pd.read_csv(workspace.competition("digits").solution)["Label"] == 0).mean()
    assert re.search(r"public accuracy:\s+0\.\d{4}\s+\(95% CI", out)
    assert f"{zeros:.4f}" in out                     # all-zeros is right exactly on the zeros
    assert "confusion matrix" in out and "Clopper-Pearson" in out
    assert "sample_submission.csv" in workspace.leaderboard.read_text()


def test_a_malformed_submission_exits_1_with_one_clear_line_and_no_leaderboard_change(workspace, capsys, tmp_path):
    assert cli(workspace, "prepare", "digits") == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("ImageId,Label\n1,7\n1,7\n")
    assert cli(workspace, "score", str(bad), "--competition", "digits") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {bad}: line 3: ImageId 1 appears twice"]
    assert not workspace.leaderboard.exists()


def test_kaggle_folder_can_be_prepared_and_scored_through_thecli(workspace, tmp_path, capsys):
    folder = write_kaggle_folder(tmp_path / "kaggle")
    perfect = tmp_path / "perfect.csv"
    pd.read_csv(folder / "solution.csv").to_csv(perfect, index=False)
    assert cli(workspace, "score", str(perfect), "--data", str(folder)) == 0
    assert "public accuracy:  1.0000" in capsys.readouterr().out


def test_unknown_competition_is_a_clear_error(workspace, capsys):
    assert cli(workspace, "prepare", "imagenet") == 1
    assert "unknown competition 'imagenet'" in capsys.readouterr().err


def test_leaderboard_command_prints_the_tables(workspace, capsys):
    assert cli(workspace, "leaderboard") == 0
    assert "no scored submissions" in capsys.readouterr().out


def test_ci_runs_the_readme_commands():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    setup = 'pip install "torch==2.14.1" "torchvision==0.29.1" -e ".[test]"'
    assert setup in readme and setup in ci
    assert "python -m pytest" in readme and "python -m pytest" in ci
    assert "python -m competition run" in readme.split("\n\n## ")[0]


def test_pseudo_rounds_flag_takes_auto_or_a_count_and_names_a_bad_value(capsys):
    from competition.cli import count_or_auto
    assert (count_or_auto("auto"), count_or_auto("2")) == ("auto", 2)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--pseudo-rounds", "two"])
    assert exit_info.value.code == 2
    assert "--pseudo-rounds: expected a whole number or auto, got 'two'" in capsys.readouterr().err


def test_the_metric_flag_takes_every_metric_and_map_at_any_k(capsys):
    assert build_parser().parse_args(["run", "--time-limit", "none",
                                      "--data", "d", "--metric", "map@3"]).metric == "map@3"
    assert build_parser().parse_args(["run", "--time-limit", "none", "--data", "d", "--metric", "qwk"]).metric == "qwk"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--time-limit", "none", "--data", "d", "--metric", "auc"])
    assert "unknown metric 'auc'; choose one of accuracy" in capsys.readouterr().err
