"""RFC 3339 timestamps as status stores them (UTC, second precision)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_due(moment: datetime) -> str:
    """A due time, rounded up to the second: written down, it never falls before the moment it stands for (a
    due time rounded down would wake the operator before anything can change, again and again)."""
    whole = moment.replace(microsecond=0)
    return format_time(whole if whole == moment else whole + timedelta(seconds=1))


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
