"""Fields that reach the network: header matches the Gateway compiles, and webhook URLs Ballast calls."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from ballast.api.base import Rule, checked_by

# A header value is visible characters, spaces and tabs: CR and LF would split the header.
HEADER_VALUE_PATTERN = r"^[^\x00-\x08\x0a-\x1f\x7f]+$"

HeaderValue = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=HEADER_VALUE_PATTERN)]


def regular_expression_rule() -> Rule:
    """A RegularExpression header match must compile as RE2.

    CEL has no "is this a regex" function, but `matches` compiles its pattern argument and fails
    on a bad one; `x || !x` turns that failure into the rule's error (with the compiler's reason)
    and is true for any pattern that compiles.
    """
    return Rule(
        "self.type != 'RegularExpression' || ''.matches(self.value) || !''.matches(self.value)",
        "a canaryMatch of type RegularExpression needs a value that compiles as an RE2 regular expression",
    )


# Scheme, then an authority without userinfo or backslashes (parsers disagree about both, which
# is how a URL that looks external reaches an internal address), then an optional path.
WEBHOOK_URL_PATTERN = r"^https?://[^\s/?#@\\]+([/?#][^\s\\]*)?$"
# A host name, not a number in disguise: a DNS name whose last label starts with a letter, so
# 2130706433, 0x7f.1 or 127.1 (which HTTP clients read as IPv4 addresses) are not names.
NAMED_HOST_PATTERN = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?[.])*[a-z]([-a-z0-9]*[a-z0-9])?[.]?$"
# Besides what `ip()` classifies: "this network" (Linux connects 0.0.0.0/8 to the local host) and
# cloud metadata services outside link-local space (link-local itself is refused whole).
FORBIDDEN_CIDRS = ("0.0.0.0/8", "100.100.100.200/32", "fd00:ec2::254/128")


def _address_allowed(address: str) -> str:
    ip = f"ip({address})"
    elsewhere = " && ".join(f"!cidr('{c}').containsIP({ip})" for c in FORBIDDEN_CIDRS)
    return (
        f"isIP({address}) && !{ip}.isLoopback() && !{ip}.isLinkLocalUnicast() && !{ip}.isLinkLocalMulticast()"
        f" && !{ip}.isUnspecified() && {elsewhere}"
    )


# The host, cut out of a URL the pattern admitted. (The URL library's `getHostname()` has no size
# bound the API server's cost estimator can see, so the rule cuts the host out with `find`.)
_BRACKETED = "self.substring(self.indexOf('[') + 1, self.indexOf(']'))"
_HOST = "self.find('//[^/?#:]*').substring(2)"


def _webhook_url_rule() -> Rule:
    return Rule(
        f"!self.matches(r'{WEBHOOK_URL_PATTERN}') || (self.matches(r'^https?://\\[[^\\]]*\\]') ? "
        f"{_address_allowed(_BRACKETED)} : "
        f"({_HOST}.lowerAscii().matches('{NAMED_HOST_PATTERN}') || {_address_allowed(_HOST)}))",
        "a webhook URL needs a host name or a routable IP address: loopback, link-local (cloud metadata), "
        "unspecified and IPv4-mapped IPv6 addresses are refused",
    )


WebhookURL = Annotated[
    str,
    StringConstraints(max_length=2048, pattern=WEBHOOK_URL_PATTERN),
    checked_by(_webhook_url_rule()),
]
