"""
The topic form: turn what a person typed into a L{Topic}, or into messages
to show next to the fields that are wrong.
"""

from __future__ import annotations

import re
from typing import Optional

from monitor.match import tokenize
from monitor.model import Topic

__all__ = ["TOPIC_FIELDS", "topic_form", "topic_values"]

TOPIC_FIELDS = ("name", "terms", "variants", "exclude", "languages", "sources", "group", "fuzzy")

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
        return {"name": "", "terms": "", "variants": "", "exclude": "", "languages": "", "sources": [], "group": "", "fuzzy": False}
    return {
        "name": topic.name,
        "terms": "\n".join(topic.terms),
        "variants": "\n".join(topic.variants),
        "exclude": "\n".join(topic.exclude),
        "languages": ", ".join(topic.languages),
        "sources": list(topic.sources),
        "group": topic.group or "",
        "fuzzy": topic.fuzzy,
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
    if "terms" not in errors and "variants" not in errors and not lists["terms"] and not lists["variants"]:
        errors["terms"] = "Give at least one term (or a variant): one word, “quoted phrase”, #hashtag or @handle per line."

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
    )
    return topic, errors, values
