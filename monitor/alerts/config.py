"""
The configuration of alerts: C{[[rules]]} and C{[[channels]]} tables,
checked with the L{Field} machinery of L{monitor.fields} so that every
problem names its key and line.  The same checks validate rules sent to
the API.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit

from monitor.fields import (
    DURATION,
    STRINGS,
    Field,
    Checker,
    LiteralChecker,
    at_least,
    duration,
    non_empty,
    one_of,
    parse_duration,
)
from monitor.model import LABELS, SENTIMENTS
from monitor.alerts.rules import BUCKET, RULE_TYPES, SEVERITIES, Rule, check_phrases, check_query

__all__ = [
    "CHANNEL_KINDS",
    "RULE_FIELDS",
    "check_alerts",
    "check_rule_spec",
    "channel_defaults",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

#: Notifications per minute a channel sends at most, by kind.  Slack takes
#: about one message per second per webhook.
DEFAULT_RATE = {"slack": 60, "webhook": 120, "email": 10, "live": 600}

#: The longest baseline: the detector keeps this much history per topic.
MAX_BASELINE = 7 * 86400

#: The longest window of a story rule: stories keep two hours of
#: per-minute counts (L{monitor.stories.MINUTES}).
MAX_STORY_WINDOW = 3600


def _name(value: str) -> Optional[str]:
    if not _NAME.fullmatch(value):
        return "must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
    return None


def _labels(values: list) -> Optional[str]:
    unknown = [v for v in values if v not in LABELS]
    if unknown:
        return f"unknown label {unknown[0]!r} (labels: {', '.join(LABELS)})"
    return None


def _fraction(value: float) -> Optional[str]:
    return None if 0 <= value <= 1 else "must be from 0 to 1"


def _positive(value: float) -> Optional[str]:
    return None if value > 0 else "must be more than 0"


def _duration_or_zero(value: Any) -> Optional[str]:
    if value == 0 and not isinstance(value, bool):
        return None
    return duration(value)


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


RULE_COMMON = {
    "name": Field(str, check=_name, doc="Unique; names the rule in the API and in incidents."),
    "type": Field(str, check=one_of(*RULE_TYPES)),
    "topics": Field(STRINGS, [], doc="Topics it watches; empty for every topic."),
    "enabled": Field(bool, True),
    "severity": Field(str, "warning", one_of(*SEVERITIES)),
    "escalate_at": Field(float, None, _positive, doc="Signal level at which the incident becomes critical."),
    "channels": Field(STRINGS, [], doc="Channels to notify; empty for every channel."),
}

_SPIKE_AND_SHIFT = {
    "baseline": Field(DURATION, "24h", duration),
    "min_count": Field(int, 20, at_least(1)),
    "warmup": Field(DURATION, "1h", _duration_or_zero),
    "cooldown": Field(DURATION, "15m", duration),
}

#: The C{query} key of the post rules.
_QUERY = Field(str, None, check_query, doc="A topic query a post must satisfy too (see Topic queries).")

#: The keys of each rule type besides L{RULE_COMMON}.
RULE_FIELDS: dict[str, dict[str, Field]] = {
    "keyword": {
        "phrases": Field(STRINGS, []),
        "labels": Field(STRINGS, [], _labels),
        "sentiment": Field(str, None, one_of(*SENTIMENTS)),
        "query": _QUERY,
        "cooldown": Field(DURATION, "30m", duration),
    },
    "influencer": {
        "min_followers": Field(int, 10000, at_least(0)),
        "verified": Field(bool, True),
        "sentiment": Field(str, "negative", one_of(*SENTIMENTS, "any")),
        "query": _QUERY,
        "cooldown": Field(DURATION, "30m", duration),
    },
    "engagement": {
        "likes": Field(int, None, at_least(1)),
        "reposts": Field(int, None, at_least(1)),
        "replies": Field(int, None, at_least(1)),
        "velocity": Field(float, None, _positive),
        "query": _QUERY,
        "cooldown": Field(DURATION, "30m", duration),
    },
    "purchase_intent": {
        "min_followers": Field(int, 0, at_least(0)),
        "query": _QUERY,
        "cooldown": Field(DURATION, "30m", duration),
    },
    "volume_spike": {
        "window": Field(DURATION, "5m", duration),
        "factor": Field(float, 3.0, at_least(1)),
        "drops": Field(bool, False),
        **_SPIKE_AND_SHIFT,
    },
    "sentiment_shift": {
        "window": Field(DURATION, "15m", duration),
        "threshold": Field(float, 0.4, _fraction),
        "margin": Field(float, 0.15, _fraction),
        **_SPIKE_AND_SHIFT,
    },
    "source_health": {
        "sources": Field(STRINGS, [], doc="Sources it watches; empty for every source."),
        "after": Field(DURATION, "10m", duration),
        "silent": Field(bool, True),
        "cooldown": Field(DURATION, "5m", duration),
    },
    "story": {
        "window": Field(DURATION, "10m", duration, doc="The span the story's growth is measured over."),
        "rate": Field(float, 2.0, _positive, doc="Posts per minute over the window at which it fires."),
        "min_size": Field(int, 20, at_least(1), doc="Posts the story must have (all told) before it can fire."),
        "cooldown": Field(DURATION, "30m", duration),
    },
}

CHANNEL_COMMON = {
    "name": Field(str, check=_name),
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
