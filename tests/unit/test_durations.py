"""Every duration the CRD accepts works wherever it is used: date arithmetic, due times, HTTPRoute timeouts."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import Weights
from ballast.api.timestamps import parse_time
from ballast.api.types import DURATION_PATTERN, parse_duration
from ballast.traffic.gateway_api import build_http_route
from ballast.traffic.router import Backends

_NUMBER = st.one_of(
    st.integers(min_value=0, max_value=10**6).map(str),
    st.tuples(st.integers(0, 999), st.integers(0, 10**6)).map(lambda whole: f"{whole[0]}.{whole[1]}"),
    st.integers(min_value=0, max_value=10**30).map(str),  # centuries and beyond: Go's limit is about 292 years
)
# Every text the CRD's pattern accepts (up to its 32 characters): fractions, compounds, repeated units, zero.
ANY_DURATION = st.one_of(
    st.lists(st.tuples(_NUMBER, st.sampled_from(["ms", "s", "m", "h"])).map("".join), min_size=1, max_size=4)
    .map("".join)
    .filter(lambda text: len(text) <= 32),
    st.from_regex(DURATION_PATTERN, fullmatch=True).filter(lambda text: len(text) <= 32),
)
# The longest duration Go (and so the API server's CEL `duration()`) can hold: about 292 years.
GO_MAX = timedelta(microseconds=(2**63 - 1) // 1000)
# Gateway API (GEP-2257): up to four whole parts of at most five digits.
GATEWAY_DURATION = re.compile(r"^(?:(\d{1,5})h)?(?:(\d{1,5})m)?(?:(\d{1,5})s)?(?:(\d{1,5})ms)?$")
GATEWAY_MAX = timedelta(hours=99999)
MILLISECOND = timedelta(milliseconds=1)


@settings(max_examples=300, deadline=None)
@given(ANY_DURATION)
def test_every_duration_is_read_within_what_date_arithmetic_can_add(text: str) -> None:
    duration = parse_duration(text)
    assert timedelta(0) <= duration <= GO_MAX
    assert datetime(2026, 11, 24, tzinfo=UTC) + duration < datetime.max.replace(tzinfo=UTC)


def test_fractions_are_read_exactly_and_centuries_stop_where_go_stops() -> None:
    assert parse_duration("1.5m") == timedelta(seconds=90)
    assert parse_duration("0.1s") * 3 == parse_duration("0.3s")
    assert parse_duration("1h0.5m0.25s") == timedelta(hours=1, seconds=30.25)
    assert parse_duration("9" * 30 + "h") == GO_MAX


@settings(deadline=None)
@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)))
def test_a_due_time_is_never_written_before_the_moment_it_stands_for(moment: datetime) -> None:
    from ballast.api.timestamps import format_due

    written = parse_time(format_due(moment))
    assert moment <= written < moment + timedelta(seconds=1)


def route_timeouts(request: str, backend: str) -> list[dict[str, str]]:
    spec = ModelDeploymentSpec.model_validate(
        {
            "model": {"name": "m", "image": "i"},
            "traffic": {"parentRefs": [{"name": "gw"}], "timeouts": {"request": request, "backendRequest": backend}},
        }
    )
    md = {"metadata": {"name": "bot", "namespace": "apps", "uid": "u"}}
    backends = Backends(stable="bot-a", canary=None, weights=Weights(), mirror=None, fallback=None)
    route = build_http_route(md, spec, backends)
    return [rule["timeouts"] for rule in route["spec"]["rules"]]


def gateway_value(text: str) -> timedelta:
    match = GATEWAY_DURATION.fullmatch(text)
    assert text, "an empty Gateway API duration"
    assert match is not None, f"{text!r} is not a Gateway API duration"
    hours, minutes, seconds, millis = (int(part or 0) for part in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds, milliseconds=millis)


def test_a_fractional_timeout_is_written_as_the_gateway_api_reads_it() -> None:
    assert route_timeouts("1.5m", "0.5s")[-1] == {"request": "1m30s", "backendRequest": "500ms"}


def test_a_backend_timeout_never_outlasts_the_request_as_the_gateway_api_requires() -> None:
    assert route_timeouts("10s", "300s")[-1] == {"request": "10s", "backendRequest": "10s"}
    assert route_timeouts("0s", "300s")[-1] == {"request": "0s", "backendRequest": "5m"}  # 0s: no request timeout


@settings(max_examples=200, deadline=None)
@given(ANY_DURATION, ANY_DURATION)
def test_every_timeout_the_crd_accepts_is_a_gateway_api_duration(request: str, backend: str) -> None:
    for timeouts in route_timeouts(request, backend):
        for text, written in ((request, timeouts["request"]), (backend, timeouts["backendRequest"])):
            # Whole milliseconds, rounded up: a timeout is never shorter than written, nor zero (off) unless zero.
            wanted = min(GATEWAY_MAX, timedelta(milliseconds=math.ceil(parse_duration(text) / MILLISECOND)))
            if text == backend and parse_duration(request):
                wanted = min(wanted, gateway_value(timeouts["request"]))
            assert gateway_value(written) == wanted
        # What the Gateway API's own rule on the route asks (a zero request timeout means none).
        limit = gateway_value(timeouts["request"])
        assert not limit or gateway_value(timeouts["backendRequest"]) <= limit
