"""
The configuration of alerts: C{[[rules]]} and C{[[channels]]} tables,
checked with the L{Field} machinery of L{monitor.fields} so that every
problem names its key and line.  The same checks validate rules sent to
the API.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit

from monitor.fields import (
    DURATION,
    STRINGS,
    Field,
    Checker,
    LiteralChecker,
    at_least,
    check_name,
    duration,
    non_empty,
    one_of,
    parse_duration,
)
from monitor.alerts.rules import BUCKET, RULE_COMMON, RULE_FIELDS, RULE_TYPES, SEVERITIES, Rule, check_phrases

__all__ = [
    "CHANNEL_KINDS",
    "RULE_COMMON",
    "RULE_FIELDS",
    "check_alerts",
    "check_rule_spec",
    "channel_defaults",
]

#: Notifications per minute a channel sends at most, by kind.  Slack takes
#: about one message per second per webhook.
DEFAULT_RATE = {"slack": 60, "webhook": 120, "email": 10, "live": 600}

#: The longest baseline: the detector keeps this much history per topic.
MAX_BASELINE = 7 * 86400

#: The longest window of a story rule: stories keep two hours of
#: per-minute counts (L{monitor.stories.MINUTES}).
MAX_STORY_WINDOW = 3600


def _url(value: str) -> Optional[str]:
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http or https URL"
    return None


def _port(value: int) -> Optional[str]:
    return None if 1 <= value <= 65535 else "must be a port number (1 to 65535)"


def _secret(value: str) -> Optional[str]:
    if value.startswith("whsec_"):
        try:
            if not base64.b64decode(value[6:], validate=True):
                raise ValueError
        except (binascii.Error, ValueError):
            return "a whsec_ secret must be whsec_ followed by base64"
    elif len(value) < 16:
        return "must be at least 16 characters (or whsec_ and base64)"
    return None


CHANNEL_COMMON = {
    "name": Field(str, check=check_name),
    "kind": Field(str),
    "enabled": Field(bool, True),
    "min_severity": Field(str, "info", one_of(*SEVERITIES)),
    "rules": Field(STRINGS, [], doc="Rules whose incidents it takes; empty for every rule."),
    "rate_limit": Field(int, None, at_least(1), doc="Most notifications per minute."),
    "timeout": Field(DURATION, "10s", duration),
}

#: The keys of each channel kind besides L{CHANNEL_COMMON}.
CHANNEL_KINDS: dict[str, dict[str, Field]] = {
    "slack": {
        "url": Field(str, check=_url),
    },
    "webhook": {
        "url": Field(str, check=_url),
        "secret": Field(str, None, _secret),
    },
    "email": {
        "host": Field(str, check=non_empty),
        "port": Field(int, 587, _port),
        "security": Field(str, "starttls", one_of("starttls", "tls", "none")),
        "username": Field(str, None),
        "password": Field(str, None),
        "sender": Field(str, check=non_empty),
        "to": Field(STRINGS, check=non_empty),
        "ca_file": Field(str, None, non_empty),
    },
    "live": {},
}


def channel_defaults(kind: str, name: str) -> dict[str, Any]:
    """
    A channel table with every key at its default, such as the implicit
    C{live} channel.
    """
    specs = dict(CHANNEL_COMMON, **CHANNEL_KINDS[kind])
    out = {k: f.default for k, f in specs.items() if not f.required}
    out.update(name=name, kind=kind, rate_limit=DEFAULT_RATE[kind])
    return out


def _check_rule_table(c: Checker, key: str, table: dict) -> Optional[dict]:
    """
    The keys of one rule table and the checks between them; the checked
    spec (maybe with problems reported), or C{None} if its keys are wrong.
    """
    kind = table.get("type")
    if not isinstance(kind, str) or kind not in RULE_FIELDS:
        c.problem(f"{key}.type", "must be one of " + ", ".join(repr(k) for k in RULE_TYPES))
        return None
    specs = dict(RULE_COMMON, **RULE_FIELDS[kind])
    before = len(c.problems)
    checked = c.table(key, specs, table)
    if len(c.problems) > before:
        return None
    if kind == "keyword":
        if not checked["phrases"] and not checked["labels"] and not checked["query"]:
            c.problem(f"{key}.phrases", "a keyword rule needs phrases, labels or a query")
        elif checked["phrases"]:
            problem = check_phrases(checked["phrases"])
            if problem:
                c.problem(f"{key}.phrases", problem)
    elif kind == "engagement":
        if all(checked[k] is None for k in ("likes", "reposts", "replies", "velocity")):
            c.problem(f"{key}.likes", "an engagement rule needs likes, reposts, replies or velocity")
    elif kind in ("volume_spike", "sentiment_shift"):
        window = parse_duration(checked["window"])
        baseline = parse_duration(checked["baseline"])
        if window % BUCKET:
            c.problem(f"{key}.window", "must be whole minutes")
        if baseline % BUCKET or baseline < window or baseline > MAX_BASELINE:
            c.problem(f"{key}.baseline", "must be whole minutes, at least the window and at most 7 days")
    elif kind == "story":
        window = parse_duration(checked["window"])
        if window % BUCKET or not BUCKET <= window <= MAX_STORY_WINDOW:
            c.problem(f"{key}.window", "must be whole minutes, from 1m to 1h (stories keep an hour and more of counts)")
    elif kind == "source_health" and checked["topics"]:
        c.problem(f"{key}.topics", "a source_health rule watches sources, not topics (use sources)")
    return checked


def _check_names(c: Checker, key: str, names: Iterable[str], known: Optional[set], what: str) -> None:
    if known is None:
        return
    for name in names:
        if name not in known:
            c.problem(key, f"names no configured {what}: {name!r}")


def check_alerts(c: Checker, data: dict, topic_names: set, source_names: set, live: bool) -> tuple[list, list]:
    """
    Check the C{[[rules]]} and C{[[channels]]} of a configuration; returns
    the checked rule specs and channel tables (with the implicit C{live}
    channel when C{live} (C{[alerts] live}) is on and no live channel is
    listed).
    """
    channels, channel_keys = [], []
    channel_names: set[str] = set()
    for key, table in c.array("channels", data):
        kind = table.get("kind")
        if kind not in CHANNEL_KINDS:
            c.problem(f"{key}.kind", "must be one of " + ", ".join(repr(k) for k in CHANNEL_KINDS))
            continue
        before = len(c.problems)
        checked = c.table(key, dict(CHANNEL_COMMON, **CHANNEL_KINDS[kind]), table)
        c.unique(key, checked, channel_names, "channel")
        if len(c.problems) > before:
            continue
        if kind == "email":
            if (checked["username"] is None) != (checked["password"] is None):
                c.problem(f"{key}.password", "username and password go together")
            elif checked["username"] is not None and checked["security"] == "none":
                c.problem(f"{key}.security", "a login needs starttls or tls, not none")
        if checked["rate_limit"] is None:
            checked["rate_limit"] = DEFAULT_RATE[kind]
        channels.append(checked)
        channel_keys.append((key, checked))
    if live and not any(ch["kind"] == "live" for ch in channels) and "live" not in channel_names:
        channels.append(channel_defaults("live", "live"))
        channel_names.add("live")

    rules = []
    rule_names: set[str] = set()
    for key, table in c.array("rules", data):
        before = len(c.problems)
        checked = _check_rule_table(c, key, table)
        if checked is None:
            continue
        c.unique(key, checked, rule_names, "rule")
        _check_names(c, f"{key}.topics", checked["topics"], topic_names, "topic")
        _check_names(c, f"{key}.channels", checked["channels"], channel_names, "channel")
        if checked["type"] == "source_health":
            _check_names(c, f"{key}.sources", checked["sources"], source_names, "source")
        if len(c.problems) == before:
            rules.append(checked)

    for key, channel in channel_keys:
        _check_names(c, f"{key}.rules", channel["rules"], rule_names, "rule")
    return rules, channels


def check_rule_spec(
    spec: Any,
    topic_names: Optional[set] = None,
    source_names: Optional[set] = None,
    channel_names: Optional[set] = None,
    origin: str = "web",
) -> tuple[Optional[Rule], list[str]]:
    """
    Validate a rule sent to the API (or read back from the store).  Returns
    the rule and no problems, or C{None} and every problem, each naming its
    key.  A C{None} set of names is not checked.
    """
    c = LiteralChecker()
    if not isinstance(spec, dict):
        return None, ["rule: must be a JSON object"]
    # null means "not given" (JSON has it, TOML does not), so a rule read
    # from the API can be sent back as it is.
    spec = {k: v for k, v in spec.items() if v is not None and k != "origin" and k != "open_incidents"}
    checked = _check_rule_table(c, "rule", spec)
    if checked is not None:
        _check_names(c, "rule.topics", checked["topics"], topic_names, "topic")
        _check_names(c, "rule.channels", checked["channels"], channel_names, "channel")
        if checked["type"] == "source_health":
            _check_names(c, "rule.sources", checked["sources"], source_names, "source")
    if c.problems or checked is None:
        return None, c.problems
    return Rule(checked, origin=origin), []
