"""Whose turn on a shared line, on a fake clock: earliest due first, ties by
who waited longest, no starvation under overload, dead devices backed off."""

from __future__ import annotations

from collections import Counter

import pytest

from cityedge.drivers.modbus.rota import Rota
from cityedge.sdk.backoff import next_due


def test_next_due_up_skips_missed_ticks() -> None:
    assert next_due(10.0, 10.2, 1.0) == 11.0
    assert next_due(10.0, 11.0, 1.0) == 12.0  # exactly on the next tick: that one is missed
    assert next_due(10.0, 13.5, 1.0) == pytest.approx(14.0)  # overran 3 ticks: no burst


def test_next_due_down_doubles_up_to_the_ceiling() -> None:
    waits = [next_due(0.0, 100.0, 0.5, down_polls=n, backoff_max=6.0) - 100.0 for n in (1, 2, 3)]
    assert waits == [0.5, 1.0, 2.0]
    assert next_due(0.0, 100.0, 0.5, down_polls=10, backoff_max=6.0) == 106.0
    assert next_due(0.0, 100.0, 0.5, down_polls=1000, backoff_max=6.0) == 106.0
    # the ceiling is never below the poll interval
    assert next_due(0.0, 100.0, 10.0, down_polls=5, backoff_max=1.0) == 110.0


def test_listed_order_then_round_robin_among_equals() -> None:
    rota = Rota(["a", "b", "c"], now=0.0)
    served = []
    for _ in range(7):
        name, _due = rota.next()
        served.append(name)
        rota.served(name, now=0.0, interval=0.0)  # everyone stays due at once: round robin
    assert served == ["a", "b", "c", "a", "b", "c", "a"]
    with pytest.raises(ValueError):
        Rota([], now=0.0)


def simulate(
    intervals: dict[str, float],
    cost: dict[str, float],
    seconds: float,
    down: frozenset[str] = frozenset(),
    backoff_max: float = 8.0,
) -> tuple[Counter[str], dict[str, float]]:
    """Run a rota on a fake clock where each poll holds the line `cost` seconds."""
    rota = Rota(intervals, now=0.0)
    now = 0.0
    polls: Counter[str] = Counter()
    last: dict[str, float] = {}
    longest: dict[str, float] = dict.fromkeys(intervals, 0.0)
    for _ in range(100_000):  # bounded; the clock ends it far sooner
        name, due = rota.next()
        now = max(now, due)
        if now >= seconds:
            break
        longest[name] = max(longest[name], now - last.get(name, 0.0))
        last[name] = now
        now += cost[name]
        polls[name] += 1
        failing = polls[name] if name in down else 0
        rota.served(name, now, intervals[name], down_polls=failing, backoff_max=backoff_max)
    return polls, longest


def test_a_fast_device_does_not_starve_a_slow_one_on_an_overloaded_line() -> None:
    # the fast one asks 10 polls/s, the slow one 1/s; the line carries 3.3 polls/s
    polls, longest = simulate({"fast": 0.1, "slow": 1.0}, {"fast": 0.3, "slow": 0.3}, 100.0)
    assert polls["slow"] >= 99  # every one of its ticks, despite the overload
    assert longest["slow"] <= 1.0 + 0.3 + 1e-9  # at worst one poll late
    assert polls["fast"] >= 230  # and the fast one gets all the rest
    assert polls["slow"] + polls["fast"] >= 330


def test_equals_share_an_overloaded_line_equally() -> None:
    names = {f"tc-{i}": 0.1 for i in range(5)}
    polls, longest = simulate(names, dict.fromkeys(names, 0.05), 60.0)
    assert max(polls.values()) - min(polls.values()) <= 1
    assert max(longest.values()) <= 5 * 0.05 + 1e-9  # each waits for the four others at most


def test_a_dead_device_is_backed_off_and_does_not_eat_the_line() -> None:
    # the dead one costs a 0.5 s timeout per attempt; backed off to every 8 s
    intervals = {"dead": 0.5, "a": 0.5, "b": 0.5}
    cost = {"dead": 0.5, "a": 0.02, "b": 0.02}
    polls, longest = simulate(intervals, cost, 120.0, down=frozenset({"dead"}))
    assert polls["dead"] <= 4 + 120 / 8 + 1  # 0.5, 1, 2, 4, then every 8 s
    assert polls["a"] >= 235 and polls["b"] >= 235  # nearly every 0.5 s tick
    assert longest["a"] <= 0.5 + 0.5 + 0.02 + 1e-9  # at worst behind one timeout


def test_served_on_time_late_and_down() -> None:
    rota = Rota(["a"], now=0.0)
    assert rota.served("a", now=0.3, interval=1.0) == 1.0  # on its tick grid
    assert rota.served("a", now=2.5, interval=1.0) == 2.5  # late: due at once, no burst
    assert rota.served("a", now=2.6, interval=1.0) == 3.5
    assert rota.served("a", now=4.0, interval=1.0, down_polls=3, backoff_max=60) == 8.0


def test_everyone_due_again_when_the_line_comes_back() -> None:
    rota = Rota(["a", "b"], now=0.0)
    rota.served("a", now=0.0, interval=50.0)
    rota.served("b", now=0.0, interval=70.0)
    rota.everyone_now(10.0)
    assert rota.due("a") == rota.due("b") == 10.0
    assert rota.next() == ("a", 10.0)  # served longest ago
    rota.everyone_now(20.0)  # never pushes a device later
    assert rota.due("a") == 10.0
