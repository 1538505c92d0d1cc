"""
The topic form: turn what a person typed into a L{Topic}, or into messages
to show next to the fields that are wrong.
"""

from __future__ import annotations

import re
from typing import Optional

from monitor.match import tokenize
from monitor.model import Topic
from monitor.query import QueryError, parse as parse_query

__all__ = [
    "BACKTEST_PERIODS",
    "TOPIC_FIELDS",
    "rule_fields",
    "rule_form",
    "rule_problems",
    "rule_values",
    "topic_form",
    "topic_values",
]

TOPIC_FIELDS = ("name", "terms", "variants", "exclude", "languages", "sources", "group", "fuzzy", "query")

MAX_NAME = 100
MAX_TERM = 200
MAX_TERMS = 500
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,]+", text or "") if w]


def topic_values(topic: Optional[Topic]) -> dict[str, object]:
    """
    The form's field values for an existing topic (or an empty form).
    """
    if topic is None:
        return {
            "name": "",
            "terms": "",
            "variants": "",
            "exclude": "",
            "languages": "",
            "sources": [],
            "group": "",
            "fuzzy": False,
            "query": "",
        }
    return {
        "name": topic.name,
        "terms": "\n".join(topic.terms),
        "variants": "\n".join(topic.variants),
        "exclude": "\n".join(topic.exclude),
        "languages": ", ".join(topic.languages),
        "sources": list(topic.sources),
        "group": topic.group or "",
        "fuzzy": topic.fuzzy,
        "query": topic.query,
    }


def topic_form(form: dict[str, list[str]], sources, taken) -> tuple[Optional[Topic], dict[str, str], dict[str, object]]:
    """
    Check a submitted topic form.

    @param form: field name to submitted values.
    @param sources: the configured source names a topic may be limited to.
    @param taken: topic names already used by other topics.
    @return: C{(topic, errors, values)}: the topic if there are no errors,
        messages by field name, and the values to show in the form again.
    """

    def one(name: str) -> str:
        values = form.get(name) or [""]
        return values[-1]

    values: dict[str, object] = {
        "name": one("name").strip(),
        "terms": one("terms"),
        "variants": one("variants"),
        "exclude": one("exclude"),
        "languages": one("languages").strip(),
        "sources": [s for s in form.get("sources", []) if s],
        "group": one("group").strip(),
        "fuzzy": one("fuzzy") in ("on", "true", "1", "yes"),
        "query": one("query").strip(),
    }
    errors: dict[str, str] = {}

    name = values["name"]
    if not name:
        errors["name"] = "A topic needs a name."
    elif len(name) > MAX_NAME:
        errors["name"] = f"At most {MAX_NAME} characters."
    elif _CONTROL.search(name):
        errors["name"] = "No control characters, please."
    elif name in taken:
        errors["name"] = f"There is already a topic called “{name}”."

    lists = {}
    for field in ("terms", "variants", "exclude"):
        entries = _lines(values[field])
        lists[field] = entries
        if len(entries) > MAX_TERMS:
            errors[field] = f"At most {MAX_TERMS} entries."
            continue
        for number, entry in enumerate(entries, 1):
            if len(entry) > MAX_TERM:
                errors[field] = f"Line {number} is longer than {MAX_TERM} characters."
                break
            if not tokenize(entry.strip("\"'“”‘’«»")):
                errors[field] = f"Line {number} (“{entry}”) has no word in it to match."
                break
    query = values["query"]
    if query:
        try:
            parse_query(query)
        except QueryError as e:
            errors["query"] = query_problem(e)
    if (
        "terms" not in errors
        and "variants" not in errors
        and not lists["terms"]
        and not lists["variants"]
        and not query
    ):
        errors["terms"] = (
            "Give at least one term (or a variant): one word, “quoted phrase”, #hashtag or @handle per line, "
            "or a query."
        )

    languages = _words(values["languages"])
    for lang in languages:
        if not _LANGUAGE.fullmatch(lang):
            errors["languages"] = f"“{lang}” is not a language tag such as en, pt-BR or de."
            break

    known = set(sources)
    for source in values["sources"]:
        if source not in known:
            errors["sources"] = f"There is no source called “{source}”."
            break

    group = values["group"]
    if len(group) > MAX_NAME:
        errors["group"] = f"At most {MAX_NAME} characters."
    elif _CONTROL.search(group):
        errors["group"] = "No control characters, please."

    if errors:
        return None, errors, values
    topic = Topic(
        name=name,
        terms=tuple(lists["terms"]),
        variants=tuple(lists["variants"]),
        fuzzy=bool(values["fuzzy"]),
        exclude=tuple(lists["exclude"]),
        languages=tuple(languages),
        sources=tuple(values["sources"]),
        group=group or None,
        query=query,
    )
    return topic, errors, values


def query_problem(error: QueryError) -> str:
    """
    A query's parse error as a form says it.
    """
    return f"At position {error.position}: expected {error.expected}, found {error.found}."


# -- alert rules ------------------------------------------------------------------

#: Periods a draft rule can be backtested over: name -> (seconds, label).
BACKTEST_PERIODS = {
    "24h": (86400, "Last 24 hours"),
    "7d": (7 * 86400, "Last 7 days"),
    "30d": (30 * 86400, "Last 30 days"),
}

#: Keys every rule has, in the form's order (name, type and topics apart).
_RULE_COMMON = ("severity", "escalate_at", "channels", "cooldown")

#: How the form names each type-specific key, and what it says about it.
_RULE_TEXT = {
    "phrases": ("Phrases", "one per line; a post containing any of them matches"),
    "labels": ("Labels", "a post with any ticked label matches"),
    "query": ("Query", "a topic query a post must satisfy too, e.g. acme (refund* OR outage) -giveaway"),
    "sentiment": ("Sentiment", "only posts of this sentiment"),
    "min_followers": ("Fewest followers", "the author has at least this many followers"),
    "verified": ("Verified authors only", ""),
    "likes": ("Likes, at least", "empty: likes do not count"),
    "reposts": ("Reposts, at least", "empty: reposts do not count"),
    "replies": ("Replies, at least", "empty: replies do not count"),
    "velocity": ("Engagement per minute, at least", "likes, reposts and replies per minute since the post was written"),
    "window": ("Window", "the span posts are counted over, e.g. 5m"),
    "factor": ("Factor", "how many times the usual rate, e.g. 3"),
    "drops": ("Also fire when the volume drops", "as far below the usual rate as the factor says"),
    "baseline": ("Baseline", "how far back the usual rate is measured, e.g. 24h"),
    "min_count": ("Fewest posts", "in the window before it can fire"),
    "warmup": ("Warm-up", "quiet time after the hub starts before it can fire; 0 for none"),
    "threshold": ("Negative share", "from 0 to 1: the share of negative posts in the window, e.g. 0.4"),
    "margin": ("Margin over the baseline", "from 0 to 1: how far above the usual negative share"),
    "sources": ("Sources", "none ticked: every source"),
    "after": ("After", "how long a source is down before it fires, e.g. 10m"),
    "silent": ("A silent source counts as down", "one that is connected but collects nothing"),
    "rate": ("Posts per minute", "how fast one story must grow over the window, e.g. 2"),
    "min_size": ("Smallest story", "posts a story must have in all before it can fire"),
}

#: Widgets: keys chosen from a fixed list (checkboxes or a select).
_RULE_CHOICES = {"labels": "checks", "sources": "checks", "sentiment": "select"}


def _shown(value) -> str:
    """
    A default as the form's hint shows it.
    """
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def rule_fields() -> list[dict]:
    """
    The type-specific keys a rule form shows, in order, each with the types
    it applies to, its label, its hint per type (defaults included) and its
    widget, from the same table that validates rules.
    """
    from monitor.alerts.config import RULE_FIELDS
    from monitor.fields import DURATION

    fields: dict[str, dict] = {}
    for rule_type, keys in RULE_FIELDS.items():
        for key, field in keys.items():
            if key in _RULE_COMMON:
                continue
            label, hint = _RULE_TEXT.get(key, (key.replace("_", " ").capitalize(), ""))
            entry = fields.setdefault(
                key, {"name": key, "label": label, "types": [], "defaults": {}, "hints": {}, "kind": None}
            )
            entry["types"].append(rule_type)
            entry["kind"] = "duration" if field.type == DURATION else getattr(field.type, "__name__", "list")
            entry["widget"] = _RULE_CHOICES.get(key) or {
                "bool": "check",
                "list": "lines" if key == "phrases" else "checks",
            }.get(entry["kind"], "text")
            if not field.required and field.default not in (None, []):
                entry["defaults"][rule_type] = field.default
            if entry["widget"] == "check":
                entry["hints"][rule_type] = hint
            else:
                default = entry["defaults"].get(rule_type)
                tail = f"default: {_shown(default)}" if default is not None else ""
                entry["hints"][rule_type] = "; ".join(part for part in (hint, tail) if part)
    for entry in fields.values():
        hints = set(entry["hints"].values())
        entry["hint"] = hints.pop() if len(hints) == 1 else _RULE_TEXT.get(entry["name"], ("", ""))[1]
    return list(fields.values())


def _convert(kind: str, text: str):
    """
    A form value as the spec wants it; C{ValueError} with a message.
    """
    if kind == "lines":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError("must be a whole number")
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ValueError("must be a number")
    if kind == "duration":
        return float(text) if re.fullmatch(r"\d+(\.\d+)?", text) else text
    return text


def rule_form(form: dict[str, list[str]], original: str = "") -> tuple[dict, dict[str, str], dict]:
    """
    A rule spec from a submitted form, the problems found while reading it
    (by key), and the values to show again.  Empty fields are left out
    (the rule's defaults apply), and so are fields of other types; a
    checkbox of the chosen type is always given (unticked is "no").
    """
    from monitor.alerts.config import RULE_FIELDS

    def one(name):
        values = form.get(name)
        return (values[-1] if values else "").strip()

    def many(name):
        return [v.strip() for v in form.get(name, []) if v.strip()]

    topics = many("topic")
    values = {"name": original or one("name"), "type": one("type"), "topics": topics,
              "enabled": "enabled" in form, "severity": one("severity"), "escalate_at": one("escalate_at"),
              "channels": many("channels"), "cooldown": one("cooldown")}  # fmt: skip
    spec: dict = {"name": values["name"], "type": values["type"], "enabled": values["enabled"]}
    errors: dict[str, str] = {}
    if topics:
        spec["topics"] = topics
    if values["severity"]:
        spec["severity"] = values["severity"]
    if values["channels"]:
        spec["channels"] = values["channels"]
    for key, kind in (("escalate_at", "float"), ("cooldown", "duration")):
        if values[key]:
            try:
                spec[key] = _convert(kind, values[key])
            except ValueError as e:
                errors[key] = str(e)
    wanted = RULE_FIELDS.get(values["type"], {})
    for field in rule_fields():
        key = field["name"]
        if field["widget"] == "check":
            values[key] = key in form
            if key in wanted:
                spec[key] = values[key]
            continue
        if field["widget"] == "checks":
            values[key] = many(key)
            if key in wanted and values[key]:
                spec[key] = values[key]
            continue
        values[key] = one(key)
        if key == "sentiment" and values[key] == "any" and values["type"] == "keyword":
            continue  # a keyword rule without a sentiment takes any
        if key in wanted and values[key]:
            try:
                spec[key] = _convert("lines" if field["widget"] == "lines" else field["kind"], values[key])
            except ValueError as e:
                errors[key] = str(e)
    return spec, errors, values


def rule_values(spec: Optional[dict]) -> dict:
    """
    What a rule form shows for a saved rule spec (or a new rule: each
    checkbox at its default).
    """
    spec = spec or {"type": "keyword", "enabled": True}
    rule_type = spec.get("type", "keyword")
    values: dict = {"name": spec.get("name", ""), "type": rule_type, "enabled": bool(spec.get("enabled", True)),
                    "topics": list(spec.get("topics") or []), "channels": list(spec.get("channels") or [])}  # fmt: skip
    for key in ("severity", "escalate_at", "cooldown"):
        values[key] = "" if spec.get(key) is None else str(spec[key])
    for field in rule_fields():
        key, value = field["name"], spec.get(field["name"])
        if field["widget"] == "check":
            if value is None:
                value = field["defaults"].get(rule_type, next(iter(field["defaults"].values()), False))
            values[key] = bool(value)
        elif field["widget"] == "checks":
            values[key] = list(value or [])
        elif value is None:
            values[key] = ""
        elif isinstance(value, list):
            values[key] = "\n".join(str(v) for v in value)
        else:
            values[key] = str(value)
    return values


def rule_problems(problems: list[str]) -> dict[str, str]:
    """
    The engine's problems (C{"rule.min_count: ..."}) by the form field
    they concern; anything not about one key goes under C{"rule"}.
    """
    errors: dict[str, str] = {}
    for problem in problems:
        head, sep, message = problem.partition(": ")
        key = "rule"
        if sep and head.startswith("rule."):
            key = re.split(r"[.\[]", head[5:], 1)[0] or "rule"
        else:
            message = problem
        if key == "topics":
            key = "topic"
        errors[key] = f"{errors[key]}; {message}" if key in errors else message
    return errors
