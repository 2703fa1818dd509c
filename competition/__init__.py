"""A Kaggle-style competition harness for image classification.

The four stages, one package each: `preparing` (a source -> public/ and private/), `fitting`
(members -> out-of-fold scores, ensemble, pseudo-labels), `grading` (a submission -> scores, the
ledger, the rules, the leaderboard) and `hosting` (a competition over HTTP). `pipeline` plays them
in order; `record` is what a run leaves.

From Python (see `api`): `competition.prepare(...)`, `competition.run(...)`, `competition.fit(...)`,
`competition.score(...)`. They are imported on first use, so `import competition` (and the command
line's `--help`) stays light.
"""

from . import clock  # noqa: F401  (first: a time limit counts from this moment)
from .version import __version__

API = ("prepare", "run", "fit", "score")
RECORDS = {"RunRecord": "record", "RunResult": "pipeline", "RunConfig": "config", "PreparedCompetition": "prepared",
           "Estimate": "grading.metrics", "Score": "grading.grader"}
__all__ = ["__version__", *API, *RECORDS]


def __getattr__(name: str):
    """The API and its record types, imported when first asked for (PEP 562)."""
    import importlib
    if name in API:
        return getattr(importlib.import_module(".api", __name__), name)
    if name in RECORDS:
        return getattr(importlib.import_module(f".{RECORDS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
