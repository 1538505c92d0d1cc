"""
The machinery of configuration checking: L{Field} (one key's type, default
and check), the checks fields share, durations, and L{Checker}, which checks
tables against fields and words every problem with its key and line.

It imports nothing of the monitor, so the schema (L{monitor.config}), the
source kinds (L{monitor.collect.kinds}) and the alerts' keys
(L{monitor.alerts.config}) all build on it without importing each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Optional


#: What L{Checker.value} returns for a value with a problem, and the
#: default of a required L{Field}.
MISSING = object()


@dataclass(frozen=True)
class Field:
    """
    One allowed key: its type, its default (absent means required) and an
    optional check returning a problem or C{None}.
    """

    type: Any
    default: Any = MISSING
    check: Optional[Callable[[Any], Optional[str]]] = None
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is MISSING


def one_of(*choices: str) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        if value not in choices:
            return "must be one of " + ", ".join(repr(c) for c in choices)
        return None

    return check


def at_least(low: float) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        if value < low:
            return f"must be at least {low}"
        return None

    return check


def between(low: float, high: float) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        if not low <= value <= high:
            return f"must be between {low} and {high}"
        return None

    return check


def non_empty(value: Any) -> Optional[str]:
    return "must not be empty" if not value else None


#: A name: of a rule, a channel.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_name(value: str) -> Optional[str]:
    if not _NAME.fullmatch(value):
        return "must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
    return None


def fraction(value: float) -> Optional[str]:
    return None if 0 <= value <= 1 else "must be from 0 to 1"


def positive(value: float) -> Optional[str]:
    return None if value > 0 else "must be more than 0"


def endpoint(value: str) -> Optional[str]:
    """
    Check a server endpoint description without listening on it.
    """
    from twisted.internet import endpoints
    from twisted.internet.testing import MemoryReactor

    try:
        endpoints.serverFromString(MemoryReactor(), value)
    except Exception as e:  # endpoint parsers raise many kinds of error
        return f"is not a valid Twisted endpoint description ({e})"
    return None


def url_check(*schemes: str, empty: bool = False) -> Callable[[Any], Optional[str]]:
    """
    A config check for a URL with one of C{schemes} and a host.
    """
    from urllib.parse import urlsplit

    def check(value: Any) -> Optional[str]:
        if empty and value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            return "must be a URL starting with " + " or ".join(f"{s}://" for s in schemes)
        return None

    return check


def http_url(value: Any) -> Optional[str]:
    """
    Check an http(s) URL, or each of a list of them.
    """
    from urllib.parse import urlsplit

    for url in value if isinstance(value, list) else [value]:
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            return f"must be an http or https URL, not {url!r}"
    return None


#: A list of strings, for Field.type.
STRINGS = list[str]


#: A span of time, for Field.type: seconds as a number, or a string with a
#: unit ("90s", "5m", "2h", "1d").  Read it with L{parse_duration}.
DURATION = "duration"
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """
    Seconds in a L{DURATION} value.  Raises C{ValueError} if it is none.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value):
        number, unit = _DURATION.fullmatch(value).groups()
        seconds = float(number) * _UNITS[unit]
    else:
        raise ValueError(f"not a duration: {value!r}")
    if not 0 < seconds < 10 * 365 * 86400:
        raise ValueError(f"not a duration: {value!r}")
    return seconds


def duration(value: Any) -> Optional[str]:
    try:
        parse_duration(value)
    except ValueError:
        return f'must be a duration: seconds, or a string such as "90s", "5m", "2h", "1d" (not {value!r})'
    return None


def duration_or_zero(value: Any) -> Optional[str]:
    if value == 0 and not isinstance(value, bool):
        return None
    return duration(value)


_ENV = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: str, environ) -> tuple[str, list[str]]:
    """
    Substitute C{${NAME}} references; return the text and the missing names.
    """
    missing: list[str] = []

    def sub(m: re.Match) -> str:
        if m.group(1):
            return "${" + m.group(2) + "}"
        if m.group(2) not in environ:
            missing.append(m.group(2))
            return ""
        return environ[m.group(2)]

    return _ENV.sub(sub, value), missing


def _line_index(text: str) -> dict[str, int]:
    """
    Map dotted key paths (C{sources[1].speed}) to line numbers, for error
    messages.  Approximate: plain tables and arrays of tables only.
    """
    index: dict[str, int] = {}
    counts: dict[str, int] = {}
    prefix = ""
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        m = re.match(r"^\[\[\s*([\w.-]+)\s*\]\]", line)
        if m:
            name = m.group(1)
            counts[name] = counts.get(name, -1) + 1
            prefix = f"{name}[{counts[name]}]"
            index.setdefault(prefix, n)
            continue
        m = re.match(r"^\[\s*([\w.-]+)\s*\]", line)
        if m:
            prefix = m.group(1)
            index.setdefault(prefix, n)
            continue
        m = re.match(r'^([\w-]+|"[^"]*")\s*=', line)
        if m:
            key = m.group(1).strip('"')
            index.setdefault(f"{prefix}.{key}" if prefix else key, n)
    return index


class Checker:
    """
    Checks tables against L{Field}s, collecting every problem as a sentence
    that names its key and, given the file's text, its line.  C{${NAME}} in
    strings is read from C{environ}.
    """

    def __init__(self, text: str, environ) -> None:
        self.lines = _line_index(text)
        self.problems: list[str] = []
        self.environ = environ

    def where(self, key: str) -> str:
        probe = key
        while probe:
            if probe in self.lines:
                return f" (line {self.lines[probe]})"
            probe = probe.rpartition(".")[0]
        return ""

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{key}{self.where(key)}: {message}")

    def value(self, key: str, spec: Field, value: Any) -> Any:
        expected = spec.type
        if expected is STRINGS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                self.problem(key, "must be a list of strings")
                return MISSING
            value = [self.expand(key, v) for v in value]
        elif expected is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.problem(key, f"must be a number, not {value!r}")
                return MISSING
            value = float(value)
        elif expected is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self.problem(key, f"must be a whole number, not {value!r}")
                return MISSING
        elif expected is bool:
            if not isinstance(value, bool):
                self.problem(key, f"must be true or false, not {value!r}")
                return MISSING
        elif expected is str:
            if not isinstance(value, str):
                self.problem(key, f"must be a string, not {value!r}")
                return MISSING
            value = self.expand(key, value)
        if spec.check is not None:
            message = spec.check(value)
            if message:
                self.problem(key, message)
                return MISSING
        return value

    def expand(self, key: str, value: str) -> str:
        out, missing = _expand(value, self.environ)
        for name in missing:
            self.problem(key, f"environment variable {name} is not set")
        return out

    def array(self, name: str, data: dict) -> list[tuple[str, dict]]:
        """
        The tables of an array of tables (C{[[name]]}), each with its key
        for messages; anything else in the array is a problem.
        """
        raw = data.get(name, [])
        if not isinstance(raw, list):
            self.problem(name, f"must be an array of tables ([[{name}]])")
            return []
        out = []
        for i, table in enumerate(raw):
            if isinstance(table, dict):
                out.append((f"{name}[{i}]", table))
            else:
                self.problem(f"{name}[{i}]", "must be a table")
        return out

    def unique(self, key: str, checked: dict, seen: set, what: str) -> None:
        """
        Check that C{checked["name"]} was not used before in C{seen}.
        """
        name = checked.get("name")
        if name in seen:
            self.problem(f"{key}.name", f"duplicate {what} name {name!r}")
        seen.add(name)

    def table(self, key: str, specs: dict[str, Field], table: Any) -> dict[str, Any]:
        if not isinstance(table, dict):
            self.problem(key, "must be a table")
            return {}
        out: dict[str, Any] = {}
        for name in table:
            if name not in specs:
                allowed = ", ".join(sorted(specs))
                self.problem(f"{key}.{name}", f"unknown key (allowed here: {allowed})")
        for name, spec in specs.items():
            full = f"{key}.{name}"
            if name in table:
                v = self.value(full, spec, table[name])
                if v is not MISSING:
                    out[name] = v
            elif spec.required:
                self.problem(full, "is required")
            else:
                out[name] = spec.default
        return out


class LiteralChecker(Checker):
    """
    Checks for specs that come from the API: C{${NAME}} is text there, never
    an environment variable (that would read the hub's secrets out).
    """

    def __init__(self) -> None:
        super().__init__("", {})

    def expand(self, key: str, value: str) -> str:
        return value
