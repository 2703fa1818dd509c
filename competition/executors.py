"""Executors map a picklable function over member specs and hand back results as they finish.

The seam is narrow on purpose: `map(fn, items, on_result)` with `fn` a module-level function
of one JSON-able argument. `InProcess` runs them one after another here (the default); the
Ray executor (issue 11) runs the same function elsewhere.
"""

from __future__ import annotations

from typing import Callable, Iterable, Protocol, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Executor(Protocol):
    def map(self, fn: Callable[[Item], Result], items: Iterable[Item],
            on_result: Callable[[Item, Result], None] | None = None) -> list[Result]:
        """Results in the order of `items`; `on_result` is called as each one finishes."""


class InProcess:
    """One item after another in this process: no start-up cost, nothing to install."""

    name = "in-process"

    def map(self, fn: Callable[[Item], Result], items: Iterable[Item],
            on_result: Callable[[Item, Result], None] | None = None) -> list[Result]:
        results = []
        for item in items:
            result = fn(item)
            if on_result is not None:
                on_result(item, result)
            results.append(result)
        return results
