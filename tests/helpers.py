"""Waiting in tests: the one way to wait for something, and the one way to wait for nothing.

* :func:`wait_until` (:func:`wait_until_async` in a coroutine) returns as soon as ``check()`` is
  truthy, with that value; otherwise it fails with :class:`WaitTimeout`, saying what was awaited,
  for how long, and the last value seen. No test sleeps a fixed time and then asserts what it
  could have waited for.
* :func:`quiet_for` (:func:`quiet_for_async`) is the fixed wait of a test that checks that
  something does *not* happen: it takes the reason why that long is enough and returns a
  description for the assertion message ("1 s (10 emulated s = one CLUSTER_TIMEOUT)").

Importable from every test module (``from helpers import wait_until``): tests/ has no
``__init__.py``, so pytest puts tests/ on ``sys.path`` for ``tests/conftest.py``, as for
``xdist_net``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

_REPR_MAX = 2000


class WaitTimeout(AssertionError):
    """What was awaited did not happen in time (an AssertionError: a test failure, not an error)."""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _REPR_MAX else text[:_REPR_MAX] + f"... ({len(text)} chars)"


def _timeout(
    what: str, within: float, started: float, checks: int, last: object, detail: Callable[[], object] | None
) -> WaitTimeout:
    msg = (
        f"timed out waiting for {what}: not true within {within:g} s "
        f"(waited {time.monotonic() - started:.2f} s, {checks} checks); last value: {_show(last)}"
    )
    if detail is not None:
        try:
            msg += f"\n{detail()}"
        except Exception as e:  # noqa: BLE001 - the report must not hide the timeout
            msg += f"\n(detail failed: {type(e).__name__}: {e})"
    return WaitTimeout(msg)


def wait_until(
    check: Callable[[], T],
    within: float,
    every: float = 0.05,
    what: str = "the condition",
    *,
    ignore: tuple[type[BaseException], ...] = (),
    detail: Callable[[], object] | None = None,
) -> T:
    """Call ``check`` every ``every`` s until it returns something truthy, and return that.

    ``check`` is called at least once, and once more at (or after) ``within`` s: it is never
    given less than ``within``. An exception of a type in ``ignore`` counts as "not yet" (it is
    the last value shown). After ``within`` s: :class:`WaitTimeout` naming ``what``, the time
    waited and the last value, then ``detail()`` (a report computed only on failure).
    """
    started = time.monotonic()
    deadline = started + within
    last: object = None
    checks = 0
    while True:
        checks += 1
        try:
            value = check()
        except ignore as e:
            last = e
        else:
            if value:
                return value
            last = value
        now = time.monotonic()
        if now >= deadline:
            raise _timeout(what, within, started, checks, last, detail)
        time.sleep(min(every, deadline - now))


async def wait_until_async(
    check: Callable[[], T | Awaitable[T]],
    within: float,
    every: float = 0.05,
    what: str = "the condition",
    *,
    ignore: tuple[type[BaseException], ...] = (),
    detail: Callable[[], object] | None = None,
) -> T:
    """:func:`wait_until` for a coroutine: sleeps with ``asyncio.sleep`` so that the event loop
    (the servers of the test) runs meanwhile; ``check`` may return an awaitable (``async def``)."""
    started = time.monotonic()
    deadline = started + within
    last: object = None
    checks = 0
    while True:
        checks += 1
        try:
            value: Any = check()
            if inspect.isawaitable(value):
                value = await value
        except ignore as e:
            last = e
        else:
            if value:
                return value
            last = value
        now = time.monotonic()
        if now >= deadline:
            raise _timeout(what, within, started, checks, last, detail)
        await asyncio.sleep(min(every, deadline - now))


def quiet_for(seconds: float, why: str) -> str:
    """Sleep ``seconds``: the observation window of a check that something does NOT happen.

    ``why`` says why that long is enough (which timeout or period it exceeds). Returns
    ``"SECONDS s (WHY)"`` for the assertion message, e.g. ``assert not fenced, f"fenced within {w}"``.
    """
    time.sleep(seconds)
    return f"{seconds:g} s ({why})"


async def quiet_for_async(seconds: float, why: str) -> str:
    """:func:`quiet_for` for a coroutine (the event loop keeps running)."""
    await asyncio.sleep(seconds)
    return f"{seconds:g} s ({why})"
