"""Every duration the CRD accepts works wherever it is used: date arithmetic and due times (PromQL windows are
in test_analysis.py, the core's decisions in test_rollout_core.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from ballast.api.timestamps import format_due, parse_time
from ballast.api.types import DURATION_PATTERN, parse_duration

_NUMBER = st.one_of(
    st.integers(min_value=0, max_value=99999).map(str),
    st.tuples(st.integers(0, 99999), st.integers(0, 999_999_999)).map(lambda parts: f"{parts[0]}.{parts[1]}"),
)
# Every text the CRD's pattern accepts: fractions, compounds, repeated units, zero, and the longest spellings.
ANY_DURATION = st.one_of(
    st.lists(st.tuples(_NUMBER, st.sampled_from(["ms", "s", "m", "h"])).map("".join), min_size=1, max_size=4).map(
        "".join
    ),
    st.from_regex(DURATION_PATTERN, fullmatch=True),
)
# Go's time.Duration (int64 nanoseconds), which the API server's CEL `duration()` reads them into.
GO_MAX = timedelta(microseconds=(2**63 - 1) // 1000)


@settings(max_examples=300, deadline=None)
@given(ANY_DURATION)
def test_every_duration_is_read_within_what_date_arithmetic_can_add(text: str) -> None:
    duration = parse_duration(text)
    assert timedelta(0) <= duration <= GO_MAX
    assert datetime(2026, 11, 24, tzinfo=UTC) + duration < datetime.max.replace(tzinfo=UTC)


def test_fractions_are_read_exactly_and_the_longest_spelling_fits_every_consumer() -> None:
    assert parse_duration("1.5m") == timedelta(seconds=90)
    assert parse_duration("0.1s") * 3 == parse_duration("0.3s")
    assert parse_duration("1h0.5m0.25s") == timedelta(hours=1, seconds=30.25)
    longest = parse_duration("99999.999999999h" * 4)
    assert longest < GO_MAX
    assert datetime(2026, 11, 24, tzinfo=UTC) + longest < datetime(2100, 1, 1, tzinfo=UTC)


@settings(deadline=None)
@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)))
def test_a_due_time_is_never_written_before_the_moment_it_stands_for(moment: datetime) -> None:
    written = parse_time(format_due(moment))
    assert moment <= written < moment + timedelta(seconds=1)
