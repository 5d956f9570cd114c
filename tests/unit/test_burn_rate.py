"""Burn-rate arithmetic and window pairing, against a reference computed from raw counters."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ballast.analysis.burn_rate import burn_rate, peak_burn_of_blip, read_pair, seconds_to_breach
from ballast.api.modeldeployment import AfterPromotion, BurnRateWindow
from ballast.api.types import parse_duration

TARGET = 0.9  # a budget of 10% bad requests
PAIR = BurnRateWindow(long="40s", short="10s", burn_rate=2.0)
RATE = 10  # requests per second, steady


def counters(bad_ratio_at: list[float]) -> tuple[list[float], list[float]]:
    """Cumulative request and error counters, one sample a second, as a server exports them."""
    requests, errors, total, bad = [0.0], [0.0], 0.0, 0.0
    for ratio in bad_ratio_at:
        total += RATE
        bad += RATE * ratio
        requests.append(total)
        errors.append(bad)
    return requests, errors


def reference_ratio(requests: list[float], errors: list[float], at: int, window: str) -> float | None:
    """The bad ratio over `window` ending at second `at`: increase of errors over increase of requests."""
    start = max(0, at - int(parse_duration(window).total_seconds()))
    served = requests[at] - requests[start]
    return None if served == 0 else (errors[at] - errors[start]) / served


def first_breach(pair: BurnRateWindow, bad_ratio_at: list[float]) -> int | None:
    requests, errors = counters(bad_ratio_at)
    for at in range(1, len(requests)):
        ratios = {w: reference_ratio(requests, errors, at, w) for w in (pair.long, pair.short)}
        if read_pair(pair, ratios, TARGET).breached:
            return at
    return None


def test_burn_rate_is_the_bad_ratio_over_the_error_budget() -> None:
    assert burn_rate(0.01, 0.99) == pytest.approx(1.0)
    assert burn_rate(0.144, 0.99) == pytest.approx(14.4)
    assert burn_rate(0.0, 0.99) == 0.0


def test_the_defaults_are_the_sre_workbook_pairs_and_their_budget_shares() -> None:
    watch = AfterPromotion(objective="errors", target=0.99)
    pairs = [(w.long, w.short, w.burn_rate) for w in watch.windows]
    assert pairs == [("1h", "5m", 14.4), ("6h", "30m", 6.0)]
    month = parse_duration("720h")
    # 14.4x over an hour spends 2% of a 30-day budget; 6x over six hours spends 5%.
    shares = [w.burn_rate * parse_duration(w.long) / month for w in watch.windows]
    assert shares == [pytest.approx(0.02), pytest.approx(0.05)]


def test_a_step_rise_breaches_when_the_arithmetic_says_on_counters() -> None:
    # Numbers exact in binary, so "strictly above" is tested at its edge: a 25% budget, a 1.5x pair.
    pair, target = BurnRateWindow(long="40s", short="10s", burn_rate=1.5), 0.75
    predicted = seconds_to_breach(pair, 0.75, target)
    # The long window burns above 1.5x once 0.75 * x / 40 > 1.5 * 0.25: x > 20s; the short one after 5s.
    assert (predicted.long_seconds, predicted.short_seconds, predicted.seconds) == (20.0, 5.0, 20.0)
    requests, errors = counters([0.0] * 30 + [0.75] * 60)
    breached = [
        at for at in range(1, len(requests))
        if read_pair(pair, {w: reference_ratio(requests, errors, at, w) for w in ("40s", "10s")}, target).breached
    ]  # fmt: skip
    # Counters read once a second: the first whole second strictly past 20 seconds into the rise.
    assert breached[0] - 30 == 21


def test_a_rise_below_the_burn_rate_never_breaches() -> None:
    assert seconds_to_breach(PAIR, 0.15, TARGET).seconds is None  # 1.5x < 2x
    assert first_breach(PAIR, [0.0] * 10 + [0.15] * 120) is None


def test_a_blip_shorter_than_the_short_window_does_nothing() -> None:
    blip = 8  # seconds of half the requests failing
    assert peak_burn_of_blip(PAIR.long, 0.5, blip, TARGET) == pytest.approx(1.0)  # below 2x: the long window holds
    assert peak_burn_of_blip(PAIR.short, 0.5, blip, TARGET) == pytest.approx(4.0)  # the short one alone breaches
    assert first_breach(PAIR, [0.0] * 30 + [0.5] * blip + [0.0] * 60) is None


def test_a_pair_breaches_only_when_both_windows_burn_above_its_rate() -> None:
    def breached(long: float | None, short: float | None) -> bool:
        return read_pair(PAIR, {"40s": long, "10s": short}, TARGET).breached

    assert breached(0.25, 0.25)
    assert not breached(0.25, 0.15)  # the breach is over: the short window no longer burns
    assert not breached(0.15, 0.5)  # a spike the long window does not confirm
    assert not breached(None, 0.5)  # no data is never a breach
    assert not breached(0.5, math.nan)
    assert not breached(0.19, 0.19)  # 1.9x, within the rate


@given(
    long=st.floats(0, 1, allow_nan=False),
    short=st.floats(0, 1, allow_nan=False),
    rate=st.floats(0.1, 100),
    target=st.floats(0.5, 0.999),
)
def test_pairing_matches_the_definition(long: float, short: float, rate: float, target: float) -> None:
    pair = BurnRateWindow(long="1h", short="5m", burn_rate=rate)
    reading = read_pair(pair, {"1h": long, "5m": short}, target)
    assert reading.long_burn == pytest.approx(long / (1 - target))
    assert reading.short_burn == pytest.approx(short / (1 - target))
    assert reading.breached == (long / (1 - target) > rate and short / (1 - target) > rate)
