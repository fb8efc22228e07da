"""PII scrubbing, as FineWeb does it: a rewrite, never a drop.

- Emails (upper case too) become `email@example.com` and `firstname.lastname@example.org`, in turn.
- IPv4 addresses are replaced only when public (`ipaddress.is_global`), cycling through six
  fixed addresses. Private, loopback and documentation ranges are not PII and stay.
- Options beyond FineWeb: public IPv6 addresses, and phone numbers (international `+CC ...`
  or North-American `(555) 555-0123` shapes with at least 10 digits).

Replacements cycle per `PiiScrubber` (one per shard), so output is deterministic.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable

from tasks.curate.config import PiiConfig

EMAIL_RE = re.compile(
    r"\b[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"|\[(?:\d{1,3}\.){3}\d{1,3}\])"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4_RE = re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\d]|\.\d)")
IPV6_RE = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")
PHONE_RE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)|\d{2,4})[\s.-]?\d{3,4}[\s.-]?\d{3,4}(?!\w)")

EMAIL_REPLACEMENTS = ("email@example.com", "firstname.lastname@example.org")
# Six fixed public addresses, as FineWeb's formatter uses (any fixed set would do).
IPV4_REPLACEMENTS = (
    "22.214.171.124",
    "126.96.36.199",
    "188.8.131.52",
    "184.108.40.206",
    "220.127.116.11",
    "18.104.22.168",
)
IPV6_REPLACEMENTS = ("2001:db8::1", "2001:db8::2")
PHONE_REPLACEMENT = "+1 555 555 0100"


def _is_public(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


def _is_phone(number: str) -> bool:
    digits = sum(ch.isdigit() for ch in number)
    return 10 <= digits <= 15


class _Cycle:
    def __init__(self, replacements: tuple[str, ...]):
        self.replacements = replacements
        self.i = 0

    def __call__(self) -> str:
        out = self.replacements[self.i % len(self.replacements)]
        self.i += 1
        return out


class PiiScrubber:
    step = "pii"

    def __init__(self, config: PiiConfig):
        self.counts: Counter[str] = Counter()
        self.rules: list[tuple[str, re.Pattern, Callable[[str], bool] | None, _Cycle]] = []
        if config.emails:
            self.rules.append(("email", EMAIL_RE, None, _Cycle(EMAIL_REPLACEMENTS)))
        if config.public_ipv4:
            self.rules.append(("ipv4", IPV4_RE, _is_public, _Cycle(IPV4_REPLACEMENTS)))
        if config.ipv6:
            self.rules.append(("ipv6", IPV6_RE, _is_public, _Cycle(IPV6_REPLACEMENTS)))
        if config.phone_numbers:
            self.rules.append(("phone", PHONE_RE, _is_phone, _Cycle((PHONE_REPLACEMENT,))))

    def __call__(self, text: str) -> str:
        for name, pattern, valid, cycle in self.rules:
            if name == "email" and "@" not in text:
                continue

            def replace(match: re.Match, name=name, valid=valid, cycle=cycle) -> str:
                if valid is not None and not valid(match.group(0)):
                    return match.group(0)
                self.counts[name] += 1
                return cycle()

            text = pattern.sub(replace, text)
        return text
