"""Command line: thin printers over the library; exit status 1 on any error, with one clear line.

Training, reporting and executors are imported by the commands that use them, so `submit`,
`invite`, `leaderboard` and `--help` start without loading torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import typing
from typing import Literal
from pathlib import Path

from .grading import leaderboard
from .preparing.competitions import COMPETITIONS, DEFAULT_COMPETITION, get_competition
from .config import RunConfig, build_config, read_config_file
from .version import __version__
from .errors import ConfigError, DataSourceError, HarnessError, RunStateError
from .grading.grader import format_score
from .preparing.prepare import (SplitOptions, check_fixed_metric, ensure_prepared, kaggle_folder_name, prepare,
                                prepare_kaggle_folder)
from .workspace import Workspace, file_lock
from .grading.rules import Rules, format_private_leaderboard, private_leaderboard, read_rules, select_final, write_rules
from .grading.metrics import METRICS, get_metric
from .grading.scoring import Row, grade_and_record, sync_leaderboard
from .fitting.stopping import StopRequested
from .prepared import is_prepared, read_prepared


def _workspace(args: argparse.Namespace) -> Workspace:
    return Workspace(Path(args.root).resolve())


def _split_options(args: argparse.Namespace) -> SplitOptions:
    return SplitOptions(args.split_seed, args.test_fraction, args.public_fraction)


def count_or_auto(text: str) -> int | str:
    """A flag that takes a whole number or `auto`."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or auto, got {text!r}") from None


def cmd_list(args: argparse.Namespace) -> int:
    workspace = _workspace(args)
    rows = [("name", "images", "classes", "size", "data here", "prepared", "description")]
    for c in COMPETITIONS.values():
        paths = workspace.competition(c.name)
        shape = f"{c.image_size}x{c.image_size}" + ("" if c.channels == 1 else f"x{c.channels}")
        rows.append((c.name + (" *" if c.name == DEFAULT_COMPETITION else ""), c.size, str(len(c.classes)),
                     shape, c.availability(paths.raw),
                     "yes" if is_prepared(paths) else "no", c.description))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    print("* the default. 'download': fetched from the usual mirrors (checksums verified) on first prepare. "
          "Any Kaggle-form folder works too: --data DIR.")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    workspace = _workspace(args)
    if not (args.data or args.name):
        raise ConfigError("prepare needs a competition NAME or --data DIR")
    name = kaggle_folder_name(Path(args.data)) if args.data else get_competition(args.name).name
    root = workspace.competition(name).root
    with file_lock(workspace.competition(name).lock):
        if args.data:
            prepare_kaggle_folder(Path(args.data), workspace.data, _split_options(args), args.metric)
        else:
            check_fixed_metric(get_competition(args.name), args.metric)
            prepare(args.name, workspace.data, _split_options(args), allow_download=not args.offline)
        if args.daily_limit is not None or args.sealed:
            old = read_rules(root)
            rules = Rules(args.daily_limit if args.daily_limit is not None else old.daily_limit,
                          args.sealed or old.sealed, old.selected)
            write_rules(root, rules)
            print(f"rules for {name}: " + ", ".join(
                ([f"at most {rules.daily_limit} scored submissions a UTC day"] if rules.daily_limit else [])
                + (["private scores sealed until `select`"] if rules.sealed else [])))
    return 0


# every RunConfig field with a flag: the run's settings as given on the command line
FLAGGED = tuple(f.name for f in dataclasses.fields(RunConfig) if f.metadata.get("flag", True) is not False)


def number_or_auto(kind: type):
    """A flag's type that takes a number of `kind` or `auto`."""
    def parse(text: str) -> int | float | str:
        if text == "auto":
            return text
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind is int else ''}number or auto, "
                                             f"got {text!r}") from None
    return parse


def config_flags(parser: argparse.ArgumentParser) -> None:
    """`--field-name` for every RunConfig field that has one, its type, choices and help from the
    field itself: a new field is a new flag. Unset flags are None, so they change nothing."""
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        flag = f.metadata.get("flag", True)
        if flag is False:
            continue
        hint, options = hints[f.name], {}
        args = typing.get_args(hint)
        if hint is bool:
            options = dict(action="store_const", const=True)
        elif typing.get_origin(hint) is Literal:
            options = dict(choices=list(args))
        elif typing.get_origin(hint) is tuple:
            options = dict(nargs="+", metavar=f.name.upper().rstrip("S"))
        elif set(args) & {int, float} and any(typing.get_origin(a) is Literal for a in args):
            options = dict(type=number_or_auto(float if float in args else int))
        elif hint in (int, float):
            options = dict(type=hint)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = "" if hint is bool or default == "" else \
            f" (default {', '.join(default) if isinstance(default, tuple) else default})"
        parser.add_argument(flag if isinstance(flag, str) else "--" + f.name.replace("_", "-"), dest=f.name,
                            default=None, help=f.metadata["help"] + shown,
                            **({"metavar": f.metadata["metavar"]} if f.metadata.get("metavar") else {}), **options)


def cmd_run(args: argparse.Namespace) -> int:
    from .clock import process_start
    from .fitting.executors import make_executor
    from .pipeline import run

    flags = {name: getattr(args, name) for name in FLAGGED}
    given = sorted(name for name, value in flags.items() if value is not None)
    given += (["--config"] if args.config else []) + (["--data"] if args.data else []) + \
        (["--metric"] if args.metric else [])
    if args.resume and given:
        raise ConfigError(f"--resume continues run {args.resume} with its own config.json; drop {', '.join(given)}")
    # the whole config is checked here, before anything is prepared or a run folder made
    cfg = build_config(args.config, **flags)
    chosen = {name for name, value in flags.items() if value is not None} | \
        (set(read_config_file(args.config)) if args.config else set())
    split = _split_options(args)
    if not args.data and not args.resume:
        get_competition(cfg.competition)
    executor = make_executor(args.workers, args.cluster, args.gpus_per_member)
    run(cfg, _workspace(args), Path(args.data) if args.data else None, args.resume, split, executor,
        metric=args.metric, given=frozenset(chosen),
        started=process_start() if args.own_process else None)
    return 0


def cmd_train_member(args: argparse.Namespace) -> int:
    """Train one member from its JSON spec: the same job any executor runs, from a fresh process."""
    from .fitting.members import MemberSpec, train_member

    try:
        spec = MemberSpec.from_json(Path(args.spec).read_text())
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"{args.spec}: not a member spec ({e})") from e
    result = train_member(spec)
    print(f"{result.name}: val acc {result.val_acc:.4f}, {result.wall_s:.1f}s -> {spec.out_dir}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    workspace = _workspace(args)
    paths = ensure_prepared(workspace, args.competition, Path(args.data) if args.data else None,
                            _split_options(args), LOG.info, args.metric)
    if not paths.has_answers():
        raise DataSourceError(f"{paths.solution}: no answers for {paths.root.name}, so nothing can be scored")
    info = read_prepared(paths.public)
    submission_id = args.run_id or Path(args.submission).name
    graded = grade_and_record(Path(args.submission), paths, Row(submission_id=submission_id, run=submission_id,
                                                                model=args.model or "-"),
                              None if args.no_leaderboard else workspace.leaderboard)
    score = graded.score
    print(f"{args.submission} on {info.name}:")
    if graded.sealed:
        print(f"public {score.metric}:  {score.public}\nprivate {score.metric}: sealed until "
              f"`python -m competition select {info.name} ...` picks the final submissions (per-class and "
              f"confusion figures read private rows too)")
    else:
        print(format_score(score, info.classes))
    if graded.rank is not None:
        print(f"leaderboard: rank {graded.rank} for {info.name} in {workspace.leaderboard}")
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    """Pick the final submissions of a competition; reveals a sealed competition's private leaderboard."""
    workspace = _workspace(args)
    paths = workspace.competition(get_competition(args.name).name if args.name in COMPETITIONS else args.name)
    if not is_prepared(paths):
        raise DataSourceError(f"{paths.root}: no prepared competition {args.name!r}")
    select_final(paths.root, args.name, args.run_ids)
    rows = private_leaderboard(paths.root)
    sync_leaderboard(workspace.leaderboard, workspace.data)        # the ledger's private scores, now shown
    leaderboard.reveal(workspace.leaderboard, read_prepared(paths.public).name,   # and those of rows older than the ledger's
                       {r["run"]: r["private"] for r in rows})
    print(f"final submissions of {args.name}: {', '.join(args.run_ids)}")
    print(format_private_leaderboard(args.name, rows))
    print(f"leaderboard: private scores revealed in {workspace.leaderboard}")
    return 0


def _hosted_paths(args: argparse.Namespace):
    """The prepared competition `serve` and `invite` act on: a registered NAME, prepared when missing,
    or a --data folder's."""
    workspace = _workspace(args)
    if args.data:
        return ensure_prepared(workspace, "", Path(args.data), SplitOptions(), LOG.info)
    if not args.name:
        raise ConfigError(f"{args.command} needs a competition NAME or --data DIR")
    name = get_competition(args.name).name if args.name in COMPETITIONS else args.name
    paths = workspace.competition(name)
    if name in COMPETITIONS and not is_prepared(paths):
        return ensure_prepared(workspace, name, None, SplitOptions(), LOG.info)
    if not is_prepared(paths):
        raise DataSourceError(f"{paths.root}: no prepared competition {args.name!r}")
    return paths


def cmd_serve(args: argparse.Namespace) -> int:
    """Host a prepared competition over HTTP until stopped (Ctrl-C)."""
    import uvicorn

    from .hosting.host import open_host, parse_deadline, upload_limit
    from .hosting.server import create_app

    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise ConfigError("--ssl-certfile and --ssl-keyfile go together: the certificate and its private key")
    host = open_host(_hosted_paths(args), daily_limit=args.daily_limit)
    if args.ends:
        host.set_deadline(parse_deadline(args.ends))
    token = host.ensure_organiser(new=args.new_organiser_token)
    if token is not None:
        token_file = host.root / "organiser-token"
        write_private(token_file, token + "\n")
        print(f"organiser token (only its hash is kept in the database; log in with it at /login): {token}\n"
              f"  also written to {token_file} (readable by you alone); delete it once you have it")
    recovered = host.recover()
    if any(recovered.values()):
        print(f"recovered after an unclean stop: {recovered['graded']} pending submission(s) graded, "
              f"{recovered['failed']} failed, {recovered['dropped']} dropped, {recovered['orphan_files']} "
              f"half-received upload(s) deleted")
    limit = args.max_upload_bytes or upload_limit(host)
    scheme = "https" if args.ssl_certfile else "http"
    ends = f", closing at {host.ends_at:%Y-%m-%d %H:%M} UTC" if host.ends_at else ""
    print(f"serving {host.name} at {scheme}://{args.host}:{args.port}{args.root_path}/ ({host.daily_limit} submissions "
          f"a participant a UTC day{ends}, uploads up to {limit:,} bytes; state in {host.database})", flush=True)
    if scheme == "http" and args.host not in ("127.0.0.1", "localhost", "::1"):
        print("warning: tokens cross the network in clear text: pass --ssl-certfile/--ssl-keyfile, or serve "
              "behind a TLS reverse proxy (README: Hosting)", flush=True)
    uvicorn.run(create_app(host, max_upload_bytes=limit, trusted_proxies=args.forwarded_allow_ips),
                host=args.host, port=args.port, log_level=args.log_level, root_path=args.root_path,
                ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile, proxy_headers=False)
    return 0


def write_private(path: Path, text: str) -> None:
    """A file only its owner may read (0600), made so before anything is written into it."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def cmd_invite(args: argparse.Namespace) -> int:
    from .hosting.host import open_host

    host = open_host(_hosted_paths(args))
    if args.revoke:
        host.revoke(args.participant)
        print(f"{args.participant}: token revoked; their submissions stay on the board")
        return 0
    print(host.invite(args.participant))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from .hosting.client import submit_file

    answer = submit_file(Path(args.file), server=args.server, token=args.token, note=args.note)
    public = answer["public"]
    print(f"submission {answer['id']} of {answer['participant']} scored: public {public['value']:.4f} "
          f"(95% CI {public['low']:.4f}-{public['high']:.4f}); {answer['used_today']} of "
          f"{answer['daily_limit']} used today (UTC)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    workspace = _workspace(args)
    run_dir = workspace.submissions / args.run_id
    if not (run_dir / "metrics.json").is_file():
        raise RunStateError(f"{run_dir}: no finished run {args.run_id!r} (metrics.json is missing)")
    competition = json.loads((run_dir / "config.json").read_text())["competition"]
    print(f"report: {write_report(run_dir, workspace.competition(competition))}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    workspace = _workspace(args)
    sync_leaderboard(workspace.leaderboard, workspace.data)        # a crash may have left a row out
    print(leaderboard.show(workspace.leaderboard, args.competition))
    return 0


class OneLineHelp(argparse.HelpFormatter):
    """Keeps each subcommand's help on its own line: argparse sizes the name column before the
    subcommands exist, so 'leaderboard' would otherwise push its help onto a second line."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=110, max_help_position=32)

    def _format_action(self, action: argparse.Action) -> str:
        self._action_max_length = max(self._action_max_length, 16)
        return super()._format_action(action)


def metric_name(text: str) -> str:
    """A metric `get_metric` knows (map@k for any k), for argparse."""
    try:
        return get_metric(text).name
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m competition",
                                     description="A Kaggle-style competition harness for image classification.",
                                     formatter_class=OneLineHelp)
    parser.add_argument("--root", default=os.environ.get("COMPETITION_ROOT", "."),
                        help="folder holding data/, submissions/ and leaderboard.md (default: current folder)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    loudness.add_argument("-v", "--verbose", action="store_true", help="debug lines too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def split_flags(p: argparse.ArgumentParser) -> None:
        defaults = SplitOptions()
        p.add_argument("--metric", type=metric_name, metavar="METRIC",
                       help=f"the metric of a --data folder: {', '.join(METRICS)} or map@k (default accuracy; "
                       f"mean-roc-auc where images have several labels)")
        p.add_argument("--split-seed", type=int, default=defaults.split_seed, help="seed of the test and usage splits")
        p.add_argument("--test-fraction", type=float, default=defaults.test_fraction,
                       help="share held out as hidden test, for sources without an official test set")
        p.add_argument("--public-fraction", type=float, default=defaults.public_fraction,
                       help="share of the hidden test on the public leaderboard")

    p = sub.add_parser("list", help="competitions, their sizes, whether their data is here")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("prepare", help="make data/NAME/public/ (train, test, sample) and private/ (answers)")
    p.add_argument("name", nargs="?", help=f"one of: {', '.join(COMPETITIONS)}")
    p.add_argument("--data", help="a Kaggle-form folder: pixel CSVs, train/ images + labels CSV, or train/<class>/")
    p.add_argument("--offline", action="store_true", help="never download; fail if the files are not here")
    p.add_argument("--daily-limit", type=int, metavar="N", help="at most N scored submissions a UTC day (Kaggle: 5)")
    p.add_argument("--sealed", action="store_true",
                   help="keep private scores out of every output until `select` picks final submissions")
    split_flags(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("run", help="prepare, fit k-fold members (OOF score, pseudo-labels), submit, score, rank")
    p.add_argument("--data", help="a Kaggle-form folder instead of a named competition")
    config_flags(p)
    p.add_argument("--config", type=Path, help="TOML or JSON file of RunConfig fields")
    p.add_argument("--resume", metavar="RUN_ID", help="finish an interrupted run without retraining finished members")
    p.add_argument("--workers", type=int,
                   help="run up to N members at once on a local Ray (pip install -e \".[ray]\")")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run members on the Ray cluster at ADDRESS (or set RAY_ADDRESS); "
                   "the workspace must be on storage every node shares")
    p.add_argument("--gpus-per-member", type=float, help="share of a GPU each member takes on Ray, e.g. 0.25")
    split_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train-member", help="train one member from its spec.json (what an executor runs)")
    p.add_argument("spec", help="a member's spec.json")
    p.set_defaults(func=cmd_train_member)

    p = sub.add_parser("score", help="validate a submission, print its scores, add a leaderboard row")
    p.add_argument("submission", help="a CSV in the competition's form (its sample_submission.csv)")
    p.add_argument("--competition", default=DEFAULT_COMPETITION)
    p.add_argument("--data", help="a Kaggle-form folder instead of a named competition")
    p.add_argument("--run-id", help="name for the leaderboard row (default: the file name)")
    p.add_argument("--model", help="model name for the leaderboard row")
    p.add_argument("--no-leaderboard", action="store_true", help="score only; leave leaderboard.md alone")
    split_flags(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("select", help="pick at most 2 final submissions; reveals a sealed private leaderboard")
    p.add_argument("name", metavar="NAME", help="the competition")
    p.add_argument("run_ids", metavar="RUN_ID", nargs="+", help="scored runs (or scored file names) to pick")
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("serve", help="host a prepared competition for many participants over HTTP (SQLite state)")
    p.add_argument("name", metavar="NAME", nargs="?",
                   help="the competition (registered, or a prepared --data folder's)")
    p.add_argument("--data", help="a Kaggle-form folder instead of a named competition")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--daily-limit", type=int, metavar="N",
                   help="scored submissions a participant a UTC day (default: prepare's --daily-limit, else 5)")
    p.add_argument("--max-upload-bytes", type=int, metavar="B",
                   help="largest upload (default: generous for the competition's rows and submission form)")
    p.add_argument("--new-organiser-token", action="store_true", help="replace a lost organiser token (printed once)")
    p.add_argument("--ends", metavar="TIME", help="the deadline, e.g. 2026-12-31T23:59Z: later uploads get 409")
    p.add_argument("--ssl-certfile", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--ssl-keyfile", metavar="FILE", help="... and its private key")
    p.add_argument("--root-path", default="", metavar="PREFIX",
                   help="the path prefix a reverse proxy serves it under, e.g. /meetup")
    p.add_argument("--forwarded-allow-ips", default="127.0.0.1", metavar="IPS",
                   help="proxies whose X-Forwarded-Proto/For are believed (default: this machine's)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("invite", help="print a participant's token for `serve` (a new one each time)")
    p.add_argument("name", metavar="NAME", nargs="?", help="the competition")
    p.add_argument("participant", metavar="PARTICIPANT", help="1-40 letters, digits, spaces and _.-@")
    p.add_argument("--data", help="a Kaggle-form folder instead of a named competition")
    p.add_argument("--revoke", action="store_true", help="end the participant's token instead")
    p.set_defaults(func=cmd_invite)

    p = sub.add_parser("submit", help="upload a submission to a `serve` server; prints its public score")
    p.add_argument("file", metavar="FILE", help="a CSV in the competition's form")
    p.add_argument("--server", required=True, metavar="URL", help="e.g. http://127.0.0.1:8000")
    p.add_argument("--token", help="your token from `invite` (or set COMPETITION_TOKEN)")
    p.add_argument("--note", default="", help="a note shown in your history")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("report", help="write submissions/RUN_ID/report.html: data, curves, scores, mistakes")
    p.add_argument("run_id", metavar="RUN_ID")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("leaderboard", help="print leaderboard.md, best first")
    p.add_argument("--competition", help="one competition's table only")
    p.set_defaults(func=cmd_leaderboard)
    return parser


LOG = logging.getLogger("competition")


def log_to_stdout(level: int) -> None:
    """The harness's lines (the `competition` logger) on this process's standard output, bare, at `level`:
    what the command line shows; a notebook or a scheduler routes the logger its own way instead."""
    for handler in [h for h in LOG.handlers if getattr(h, "command_line", False)]:
        LOG.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.command_line = True
    handler.setFormatter(logging.Formatter("%(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(level)
    LOG.propagate = False


def main(argv: list[str] | None = None) -> int:
    """The command line. Called without `argv` (the process's own command line: `python -m
    competition`, the `competition` script), `run`'s time limit counts from the process's start;
    called with one (a test, a script), from the call."""
    args = build_parser().parse_args(argv)
    args.own_process = argv is None
    log_to_stdout(logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except HarnessError as e:          # a user's fault: one line; anything else is a bug and keeps its traceback
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 1
    except StopRequested as e:         # SIGINT 130, SIGTERM 143: what a shell reports for a process they stop
        return e.exit_status


if __name__ == "__main__":
    sys.exit(main())
