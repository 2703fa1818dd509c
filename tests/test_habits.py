"""What its users expect of a Python package: an API a notebook calls, experiment logs, the logging
module, --version, and files and imports that work on Windows too."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

import competition
from competition.cli import main
from competition.fitting.train import read_training_log

REPO = Path(__file__).resolve().parents[1]


def test_the_version_is_the_packages_and_the_command_prints_it(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0 and capsys.readouterr().out.strip() == f"python -m competition {competition.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", competition.__version__)


def test_the_package_and_its_command_line_load_where_fcntl_does_not_exist(tmp_path):
    """Windows has no fcntl: every lock is filelock's, so importing any module, --help and a locked
    write work without it."""
    code = (
        "import sys; sys.modules['fcntl'] = None\n"        # `import fcntl` now raises ImportError
        "import importlib, pkgutil, competition\n"
        "skip = ('competition.__main__',)\n"             # it runs the command line
        "names = [m.name for m in pkgutil.walk_packages(competition.__path__, 'competition.') if m.name not in skip]\n"
        "[importlib.import_module(n) for n in names]\n"
        "from competition.workspace import file_lock, atomic_write_text\n"
        f"with file_lock(__import__('pathlib').Path(r'{tmp_path}') / 'x.lock'):\n"
        f"    atomic_write_text(__import__('pathlib').Path(r'{tmp_path}') / 'x.txt', 'written')\n"
        "from competition.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    print('help exit', e.code)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "help exit 0" in done.stdout and (tmp_path / "x.txt").read_text() == "written"


def readme_example() -> str:
    """The README's notebook example: the Python block after the heading `## From Python`."""
    text = (REPO / "README.md").read_text()
    section = text.split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readmes_notebook_example_runs_as_written(tmp_path, monkeypatch, restore_threads):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    result = namespace["result"]
    assert 0.5 < result.cv.value <= 1 and result.cv.low <= result.cv.value <= result.cv.high
    assert result.public.value > 0.5 and result.private.value > 0.5
    assert result.submission.is_file() and result.report.is_file()
    assert isinstance(result.record, competition.RunRecord)
    assert competition.RunRecord.read(result.run_dir) == result.record          # metrics.json reads back as it was


@pytest.mark.slow
@pytest.mark.parametrize("logger, files", [("csv", "metrics.csv"), ("tensorboard", "events.out.tfevents.*")])
def test_each_logger_leaves_its_log_in_the_member_folder_and_the_report_draws_from_it(workspace, tiny_config,
                                                                                   logger, files):
    pytest.importorskip("tensorboard") if logger == "tensorboard" else None
    from competition.pipeline import run
    result = run(tiny_config.replace(logger=logger, pseudo_rounds=0), workspace, log=lambda line: None)
    member = result.fit.rounds[0].members[0]
    assert list((Path(member.out_dir) / "logs").glob(files))
    log = read_training_log(member.out_dir)
    assert [row["epoch"] for row in log] == [h["epoch"] for h in member.history]
    assert [round(row["val_acc"], 6) for row in log] == [round(h["val_acc"], 6) for h in member.history]
    assert all({"train_loss", "val_loss", "lr"} <= set(row) for row in log)
    assert "Training curves per member, from their logs" in result.report.read_text()


@pytest.mark.slow
def test_without_a_logger_the_report_has_no_curves(workspace, tiny_config):
    from competition.pipeline import run
    result = run(tiny_config.replace(logger="none", pseudo_rounds=0), workspace, log=lambda line: None)
    assert not (Path(result.fit.rounds[0].members[0].out_dir) / "logs").exists()
    assert "Training curves" not in result.report.read_text()


def test_the_command_lines_lines_go_through_logging_and_quiet_keeps_only_warnings(workspace, capsys):
    assert main(["--root", str(workspace.root), "prepare", "digits"]) == 0
    assert "prepared digits" in capsys.readouterr().out
    assert main(["--root", str(workspace.root), "--quiet", "prepare", "digits", "--split-seed", "1"]) == 0
    assert capsys.readouterr().out == ""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("competition").addHandler(handler)
    logging.getLogger("competition").setLevel(logging.INFO)       # as a notebook's basicConfig(level=INFO) would
    try:
        competition.prepare("digits", root=workspace.root, split_seed=2)
    finally:
        logging.getLogger("competition").removeHandler(handler)
    assert any("prepared digits" in r.getMessage() for r in records)          # routed, not printed


def test_every_run_flag_is_a_config_field_and_every_flagged_field_a_flag():
    """The command line is derived from RunConfig: no second list of settings to keep in step."""
    import dataclasses

    from competition.cli import FLAGGED, build_parser
    from competition.config import RunConfig
    run_parser = build_parser()._subparsers._group_actions[0].choices["run"]
    dests = {a.dest for a in run_parser._actions}
    fields = {f.name for f in dataclasses.fields(RunConfig) if f.metadata.get("flag", True) is not False}
    assert fields == set(FLAGGED) and fields <= dests
    args = run_parser.parse_args(["--epochs", "auto", "--lr", "0.01", "--model", "fastnet", "lenet5", "--pretrained",
                                  "--probe", "only", "--logger", "tensorboard"])
    assert (args.epochs, args.lr, args.models, args.pretrained, args.probe, args.logger) == \
        ("auto", 0.01, ["fastnet", "lenet5"], True, "only", "tensorboard")
    assert args.folds is None                         # not given: the config's default, or the plan's choice
