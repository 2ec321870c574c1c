"""tests/helpers.py: wait_until returns the first truthy value, never gives up before ``within``,
and says what it waited for; quiet_for waits and says why."""

from __future__ import annotations

import asyncio
import time

import pytest

from helpers import (
    WaitTimeout,
    quiet_for,
    quiet_for_async,
    wait_until,
    wait_until_async,
)

pytestmark = pytest.mark.timeout(30)


def test_returns_the_first_truthy_value_at_once() -> None:
    values = iter([0, [], {"ok": 1}, "later"])
    t0 = time.monotonic()
    assert wait_until(lambda: next(values), 5, every=0.01) == {"ok": 1}
    assert time.monotonic() - t0 < 1.0


def test_times_out_no_earlier_than_within_and_says_what_how_long_and_the_last_value() -> None:
    calls: list[float] = []

    def check() -> list[int]:
        calls.append(time.monotonic())
        return []

    t0 = time.monotonic()
    with pytest.raises(WaitTimeout) as ei:
        wait_until(check, 0.3, every=0.05, what="the queue to fill", detail=lambda: "queue report")
    assert time.monotonic() - t0 >= 0.3 and calls[-1] - t0 >= 0.3  # a last check at the deadline
    msg = str(ei.value)
    assert msg.startswith("timed out waiting for the queue to fill: not true within 0.3 s (waited 0.3")
    assert "last value: []" in msg and msg.endswith("\nqueue report")
    assert isinstance(ei.value, AssertionError)  # a test failure


def test_ignored_exceptions_mean_not_yet_and_others_propagate() -> None:
    answers = iter([ConnectionRefusedError("not listening"), ConnectionRefusedError("not listening"), "up"])

    def check() -> str:
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    assert wait_until(check, 5, every=0.01, ignore=(ConnectionRefusedError,)) == "up"
    with pytest.raises(WaitTimeout, match=r"last value: ConnectionRefusedError\('gone'\)"):
        wait_until(lambda: (_ for _ in ()).throw(ConnectionRefusedError("gone")), 0.1, ignore=(OSError,))
    with pytest.raises(KeyError):
        wait_until(lambda: {}["x"], 5)


def test_the_async_form_awaits_coroutine_checks_and_lets_the_loop_run() -> None:
    async def main() -> None:
        ready = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, ready.set)
        assert await wait_until_async(ready.is_set, 5, every=0.01) is True

        async def answer() -> int:
            return 0

        with pytest.raises(WaitTimeout, match="async answer.*last value: 0"):
            await wait_until_async(answer, 0.1, what="async answer")
        assert await quiet_for_async(0.01, "a reason") == "0.01 s (a reason)"

    asyncio.run(main())


def test_quiet_for_waits_the_whole_time_and_names_the_reason() -> None:
    t0 = time.monotonic()
    assert quiet_for(0.1, "one CLUSTER_TIMEOUT") == "0.1 s (one CLUSTER_TIMEOUT)"
    assert time.monotonic() - t0 >= 0.1
