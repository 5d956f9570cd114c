"""Burn-rate arithmetic (SRE workbook, multiwindow multi-burn-rate alerts). Pure: numbers in, numbers out.

A ratio objective with target `t` (0.99: 99% of requests good) has an error budget of `1 - t`. The
burn rate over a window is the bad-event ratio measured there divided by that budget: 1 spends the
budget exactly over the SLO period, 14.4 spends 2% of a 30-day budget in an hour. A window pair
acts only when both its windows burn faster than the pair's rate: the long window says the breach
is significant, the short one that it is still happening.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ballast.api.modeldeployment import BurnRateWindow
from ballast.api.status import BurnWindowReading
from ballast.api.types import parse_duration


def error_budget(target: float) -> float:
    return 1.0 - target


def burn_rate(bad_ratio: float, target: float) -> float:
    """How many times faster than the SLO allows the budget burns at this bad-event ratio."""
    return bad_ratio / error_budget(target)


def _known(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else value


def read_pair(window: BurnRateWindow, ratios: dict[str, float | None], target: float) -> BurnWindowReading:
    """One pair's reading: each window's ratio and burn rate, and whether both burn faster than the pair allows.

    A window without data (no requests, or the series missing) never breaches: no data is never a verdict.
    """
    long_ratio, short_ratio = _known(ratios.get(window.long)), _known(ratios.get(window.short))
    long_burn = None if long_ratio is None else burn_rate(long_ratio, target)
    short_burn = None if short_ratio is None else burn_rate(short_ratio, target)
    breached = (
        long_burn is not None
        and short_burn is not None
        and long_burn > window.burn_rate
        and short_burn > window.burn_rate
    )
    return BurnWindowReading(
        long=window.long,
        short=window.short,
        burn_rate=window.burn_rate,
        long_ratio=long_ratio,
        short_ratio=short_ratio,
        long_burn=long_burn,
        short_burn=short_burn,
        breached=breached,
    )


@dataclass(frozen=True)
class Detection:
    """When a pair breaches after the bad-event ratio steps from 0 to `bad_ratio` under steady traffic."""

    seconds: float | None  # None: this pair never breaches at that ratio
    long_seconds: float
    short_seconds: float


def seconds_to_breach(window: BurnRateWindow, bad_ratio: float, target: float) -> Detection:
    """Seconds after a step rise until both windows of `window` breach (steady traffic, no measurement lag).

    `x` seconds into the rise a window of `W` seconds holds the ratio `bad_ratio * min(x, W) / W`, so it
    burns faster than `R` from `x > R * budget * W / bad_ratio` on, and only if the full ratio does
    (`bad_ratio / budget > R`). The pair breaches when its later window does: the long one.
    """
    needed = window.burn_rate * error_budget(target) / bad_ratio
    long_s, short_s = (parse_duration(w).total_seconds() for w in (window.long, window.short))
    long_at, short_at = needed * long_s, needed * short_s
    reachable = needed < 1.0
    return Detection(max(long_at, short_at) if reachable else None, long_at, short_at)


def peak_burn_of_blip(window: str, bad_ratio: float, seconds: float, target: float) -> float:
    """The highest burn rate a window of `window` reaches from a blip of `bad_ratio` lasting `seconds`."""
    length = parse_duration(window).total_seconds()
    return burn_rate(bad_ratio * min(seconds, length) / length, target)
