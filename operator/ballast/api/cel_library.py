"""The Kubernetes CEL libraries Ballast's rules use, for offline evaluation with cel-python.

The API server adds to standard CEL the strings, lists, regex and IP/CIDR libraries; this module
provides the functions the CRDs' rules call, with the API server's semantics (Go's `net/url` and
`net/netip`, RE2 with Go's error texts), so `ballast validate` reaches the same verdict.

An evaluation error is reported in Go's words: a function that fails records its message in
`go_errors` (cel-python folds errors passing through `||` into opaque ones) and returns an error.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

import re2
from celpy import celtypes
from celpy.evaluation import CELEvalError

_errors: ContextVar[list[str] | None] = ContextVar("cel_go_errors", default=None)


@contextmanager
def go_errors() -> Iterator[list[str]]:
    """Collect the Go-worded messages of evaluation errors raised while the block runs."""
    found: list[str] = []
    token = _errors.set(found)
    try:
        yield found
    finally:
        _errors.reset(token)


def _fail(message: str) -> CELEvalError:
    recorded = _errors.get()
    if recorded is not None:
        recorded.append(message)
    return CELEvalError(message)


# ----------------------------------------------------------------------------------------- regex

# RE2's (C++) error codes in Go's regexp/syntax words; Go's parser is a port of RE2's, so the
# offending fragment is the same.
_GO_REGEXP_ERRORS = {
    "missing )": "missing closing )",
    "missing ]": "missing closing ]",
    "unexpected )": "unexpected )",
    "invalid escape sequence": "invalid escape sequence",
    "invalid character class": "invalid character class",
    "invalid character class range": "invalid character class range",
    "no argument for repetition operator": "missing argument to repetition operator",
    "invalid repetition size": "invalid repeat count",
    "bad repetition operator": "invalid nested repetition operator",
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "invalid named capture group": "invalid named capture",
    "invalid UTF-8": "invalid UTF-8",
}


@lru_cache(maxsize=512)
def _compile(pattern: str) -> Any:
    """The compiled pattern, or Go's error text for it."""
    if pattern.endswith("\\") and (len(pattern) - len(pattern.rstrip("\\"))) % 2 == 1:
        return "error parsing regexp: trailing backslash at end of expression: ``"
    try:
        return re2.compile(pattern)
    except re2.error as error:
        text = error.args[0].decode() if isinstance(error.args[0], bytes) else str(error.args[0])
        code, _, fragment = text.partition(": ")
        if code in _GO_REGEXP_ERRORS:
            return f"error parsing regexp: {_GO_REGEXP_ERRORS[code]}: `{fragment}`"
        return f"error parsing regexp: {text}"


def matches(text: Any, pattern: Any) -> Any:
    compiled = _compile(str(pattern))
    if isinstance(compiled, str):
        return _fail(compiled)
    return celtypes.BoolType(compiled.search(str(text)) is not None)


# --------------------------------------------------------------------------------------- strings


def replace(text: Any, old: Any, new: Any, limit: Any = -1) -> celtypes.StringType:
    return celtypes.StringType(str(text).replace(str(old), str(new), int(limit)))


def find(text: Any, pattern: Any) -> Any:
    compiled = _compile(str(pattern))
    if isinstance(compiled, str):
        return _fail(compiled)
    found = compiled.search(str(text))
    return celtypes.StringType(found.group(0) if found else "")


def index_of(text: Any, part: Any) -> celtypes.IntType:
    return celtypes.IntType(str(text).find(str(part)))


def substring(text: Any, start: Any, end: Any = None) -> Any:
    value = str(text)
    stop = len(value) if end is None else int(end)
    if not 0 <= int(start) <= stop <= len(value):
        return _fail(f"index out of range: {start}")
    return celtypes.StringType(value[int(start) : stop])


def lower_ascii(text: Any) -> celtypes.StringType:
    return celtypes.StringType("".join(c.lower() if c.isascii() else c for c in str(text)))


# ----------------------------------------------------------------------------------------- lists


def total(values: Any) -> Any:
    result = sum(values)
    return celtypes.IntType(result) if isinstance(result, int) else celtypes.DoubleType(result)


def is_sorted(values: list[Any]) -> celtypes.BoolType:
    return celtypes.BoolType(all(values[i] <= values[i + 1] for i in range(len(values) - 1)))


# ---------------------------------------------------------------------------------------- ip/cidr

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse_ip(text: str) -> Address | None:
    """The Kubernetes `ip()` grammar: no zones, no IPv4-mapped IPv6, no leading zeros."""
    if "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return None
    return address


def is_ip(text: Any) -> celtypes.BoolType:
    return celtypes.BoolType(_parse_ip(str(text)) is not None)


def ip(text: Any) -> Any:
    parsed = _parse_ip(str(text))
    return (
        parsed if parsed is not None else _fail(f"IP Address {str(text)!r} parse error during conversion from string")
    )


def _predicate(test: Callable[[Address], bool]) -> Callable[[Address], celtypes.BoolType]:
    return lambda address: celtypes.BoolType(test(address))


def _link_local_multicast(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv4Address):
        return address in ipaddress.ip_network("224.0.0.0/24")
    return int(address) >> 112 & 0xFF0F == 0xFF02


def cidr(text: Any) -> Any:
    try:
        return ipaddress.ip_network(str(text))
    except ValueError:
        return _fail(f"network address parse error during conversion from string: {text}")


def contains_ip(network: Any, address: Any) -> celtypes.BoolType:
    return celtypes.BoolType(address.version == network.version and address in network)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "matches": matches,
    "replace": replace,
    "find": find,
    "indexOf": index_of,
    "substring": substring,
    "lowerAscii": lower_ascii,
    "sum": total,
    "isSorted": is_sorted,
    "isIP": is_ip,
    "ip": ip,
    "isLoopback": _predicate(lambda a: a.is_loopback),
    "isLinkLocalUnicast": _predicate(lambda a: a.is_link_local),
    "isLinkLocalMulticast": _predicate(_link_local_multicast),
    "isUnspecified": _predicate(lambda a: a.is_unspecified),
    "cidr": cidr,
    "containsIP": contains_ip,
}
