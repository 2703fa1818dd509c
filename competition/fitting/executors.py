"""Executors map a module-level function over member specs and hand back results as they finish.

The seam is narrow on purpose: `map(fn, items, on_result, **shared)` calls `fn(item, **shared)`
for every item, with `fn` picklable and `shared` the large inputs every call reads (the public
arrays). Executors change where members run, never what they compute: the same spec gives the
same logits on any of them (with the same CPU thread count).

- `InProcess`: one member after another in this process (the default; no Ray import).
- `RayExecutor`: up to N members at once on a local Ray, or on an existing Ray cluster. The
  shared inputs are put in Ray's object store once; a member whose worker died is retried by
  Ray, a member that raises stops the run with its own error and traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, TypeVar

from . import stopping
from ..cpus import usable_cpus
from ..errors import HarnessError

Item = TypeVar("Item")
Result = TypeVar("Result")
OnResult = Callable[[Any, Any], None]


class Executor(Protocol):
    name: str

    def map(self, fn: Callable[..., Result], items: Iterable[Item], on_result: OnResult | None = None,
            **shared: Any) -> list[Result]:
        """`fn(item, **shared)` for every item; results in the order of `items`; `on_result(item, result)`
        is called as each one finishes."""


class InProcess:
    """One item after another in this process: no start-up cost, nothing to install."""

    name = "in-process"

    def map(self, fn: Callable[..., Result], items: Iterable[Item], on_result: OnResult | None = None,
            **shared: Any) -> list[Result]:
        results = []
        for item in items:
            stopping.check()
            result = fn(item, **shared)
            if on_result is not None:
                on_result(item, result)
            results.append(result)
        return results


class MemberFailedError(RuntimeError):
    """A member raised inside its worker: the message carries the member and the remote traceback.
    Not a HarnessError: a failing member is a bug to see in full, not a one-line user error."""


RAY_INSTALL = 'pip install -e ".[ray]"'


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise HarnessError(f"--workers and --cluster run members on Ray, which is not installed here: "
                           f"{RAY_INSTALL}") from e
    return ray


def _call_with_threads(fn: Callable[..., Any], item: Any, threads: int, shared: dict[str, Any]) -> Any:
    """Runs in a Ray worker: give torch this member's share of the cores, then call."""
    import torch
    torch.set_num_threads(threads)
    return fn(item, **shared)


def _use_ray_token_if_there_is_one() -> None:
    """Join a cluster the way `ray start` made it. Since Ray 2.60 a local `ray.init()` writes a token to
    ~/.ray/auth_token, and `ray start --head` turns token authentication on whenever one exists; but a
    driver joining by address stays in mode `disabled` and is refused (InvalidAuthToken). So, with
    RAY_AUTH_MODE unset, a token that exists is sent; a cluster without authentication accepts it."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


class RayExecutor:
    """Members side by side on Ray: a local Ray of `workers` slots, or the cluster at `address`.

    Each member takes one CPU slot (and `gpus_per_member` of a GPU) and `threads` torch threads,
    so N members at once on a machine do not oversubscribe its cores.
    """

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, gpus_per_member: float = 0.0,
                 threads: int | None = None, max_retries: int = 2) -> None:
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            _use_ray_token_if_there_is_one()        # before Ray is imported: it reads the mode once
        ray = _import_ray()
        self.ray = ray
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=workers or usable_cpus(), include_dashboard=False, log_to_driver=False)
        slots = int(ray.cluster_resources().get("CPU", 1))
        self.workers = min(workers or slots, slots)
        self.threads = threads or max(1, usable_cpus() // self.workers)
        self.gpus_per_member = gpus_per_member
        self.max_retries = max_retries
        gpus = f", {gpus_per_member:g} GPU each" if gpus_per_member else ""
        self.name = (f"ray ({'cluster ' + address if address else 'local'}, {self.workers} at once, "
                     f"{self.threads} thread(s) each{gpus})")

    def map(self, fn: Callable[..., Result], items: Iterable[Item], on_result: OnResult | None = None,
            **shared: Any) -> list[Result]:
        ray = self.ray
        items = list(items)
        # large inputs go into the object store once; every task reads the same copy
        shared_refs = {name: ray.put(value) for name, value in shared.items()}
        remote = ray.remote(num_cpus=1, num_gpus=self.gpus_per_member, max_retries=self.max_retries,
                            retry_exceptions=False)(_call_with_shared_refs)
        # at most `workers` members in flight, started in plan order as slots free up
        waiting = list(enumerate(items))
        running: dict[Any, int] = {}
        results: dict[int, Any] = {}
        while waiting or running:
            while waiting and len(running) < self.workers:
                i, item = waiting.pop(0)
                running[remote.remote(fn, item, self.threads, shared_refs)] = i
            ready: list = []
            while not ready:        # wake every second, so a stop request is seen while members train
                ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                if stopping.requested() is not None:
                    for other in running:
                        ray.cancel(other, force=True)
                    stopping.check()
            [ref] = ready
            i = running.pop(ref)
            try:
                results[i] = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                for other in running:
                    ray.cancel(other, force=True)
                raise MemberFailedError(f"{_describe(items[i])} failed on its Ray worker; members already "
                                        f"finished stay on disk for --resume:\n{e}") from None
            if on_result is not None:
                on_result(items[i], results[i])
        return [results[i] for i in range(len(items))]


def _call_with_shared_refs(fn: Callable[..., Any], item: Any, threads: int, shared_refs: dict[str, Any]) -> Any:
    """Ray resolves only top-level ObjectRef arguments; these sit in a dict, so get them here."""
    import ray
    shared = {name: ray.get(ref) for name, ref in shared_refs.items()}
    return _call_with_threads(fn, item, threads, shared)


def _describe(item: Any) -> str:
    return getattr(item, "name", None) or str(item)


def make_executor(workers: int | None = None, cluster: str | None = None, gpus_per_member: float | None = None
                  ) -> Executor:
    """In-process unless Ray is asked for, by --workers, --cluster or RAY_ADDRESS."""
    if gpus_per_member is not None and not (0 < gpus_per_member <= 1 or float(gpus_per_member).is_integer()):
        raise HarnessError(f"--gpus-per-member {gpus_per_member}: give a share of one GPU (0 < F <= 1) "
                           f"or a whole number")
    if workers is not None and workers < 1:
        raise HarnessError(f"--workers {workers}: give at least 1")
    if workers is None and cluster is None and not os.environ.get("RAY_ADDRESS"):
        return InProcess()
    return RayExecutor(workers=workers, address=cluster, gpus_per_member=gpus_per_member or 0.0)


def check_shared_storage(out_dir: Path) -> None:
    """On a multi-node cluster a member writes on the node that ran it: the driver must see it."""
    if not (Path(out_dir) / "result.json").is_file():
        raise HarnessError(f"{out_dir}: a member finished but its outputs are not here; on a multi-node Ray "
                           f"cluster the run folder (--root) must be on storage every node shares")
