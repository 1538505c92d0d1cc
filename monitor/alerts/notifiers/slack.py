"""
Slack incoming webhooks (PROTOCOLS.md 6.1): a JSON message with a fallback
C{text} and Block Kit C{blocks}; the answer is plain text, C{ok} on 200.

Outcomes: 200 sent; 429 retry after C{Retry-After}; 5xx retry; 403, 404
and 410 (the webhook was revoked, the channel archived or removed) disable
the channel; any other 4xx means this message is bad, so it fails alone.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from zope.interface import implementer

from monitor.alerts.notifiers import (
    DISABLE,
    FAILED,
    RETRY,
    SENT,
    Delivery,
    Notification,
    explanation_lines,
    headline,
    retry_after,
    summary_lines,
)
from monitor.alerts.notifiers.http import read_body
from monitor.interfaces import INotifier
from monitor.redact import channel_secrets, redact

__all__ = ["SlackNotifier", "slack_message"]

_SEVERITY_ICON = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}
_RESOLVED_ICON = ":white_check_mark:"

#: Block Kit limits: a section's text, a header's text, a field.
_SECTION, _HEADER, _FIELD = 3000, 150, 2000
#: Posts shown in a message.
_POSTS = 3


def escape(text: str) -> str:
    """
    Escape text for Slack mrkdwn: only C{&}, C{<} and C{>} are special, and
    post text written by strangers must not make links or mentions.
    """
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _link(url: str, label: str) -> str:
    # A URL with | or > would end the link early; such URLs are not linked.
    if not url or any(c in url for c in "|<> ") or not url.startswith(("http://", "https://")):
        return escape(label)
    return f"<{url}|{escape(label)}>"


def slack_message(payload: dict[str, Any]) -> dict[str, Any]:
    """
    The message for one incident event: a header, the topic, rule, severity
    and counts as fields, the top posts with links, and the incident id.
    """
    incident = payload["incident"]
    icon = _RESOLVED_ICON if payload["event"] == "resolved" else _SEVERITY_ICON.get(incident["severity"], "")
    title = headline(payload)
    lines = summary_lines(payload)
    fields = [
        f"*Topic*\n{escape(incident.get('topic') or incident.get('source') or 'all topics')}",
        f"*Rule*\n{escape(incident['rule'])} ({escape(incident['type'])})",
        f"*Severity*\n{escape(incident['severity'])}",
        f"*Counts*\n{escape(lines[-2])}",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(f"{title}", _HEADER), "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(f"{icon} {escape(' · '.join(lines[:-2] or lines[-2:-1]))}", _SECTION)},
         "fields": [{"type": "mrkdwn", "text": _cut(f, _FIELD)} for f in fields]},
    ]  # fmt: skip
    why = explanation_lines(incident)
    if why:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(escape("\n".join(why)), _SECTION)}})
    posts = incident.get("samples") or []
    if posts:
        parts = []
        for s in posts[:_POSTS]:
            text = _cut(" ".join((s.get("text") or "").split()), 400)
            counts = f"{s.get('likes', 0)} likes · {s.get('reposts', 0)} reposts"
            who = _link(s.get("url"), f"@{s.get('author')}") if s.get("url") else escape(f"@{s.get('author')}")
            parts.append(f">{escape(text)}\n— {who} · {counts}")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n\n".join(parts), _SECTION)}})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": escape(f"incident {incident['id']} · {lines[-1]}")}],
        }
    )
    text = " · ".join(lines + why[:1])
    return {"text": _cut(escape(f"{title}. {text}"), _SECTION), "blocks": blocks}


@implementer(INotifier)
class SlackNotifier:
    """
    Post incident events to one Slack incoming webhook.
    """

    kind = "slack"
    log = Logger()

    def __init__(self, name: str, url: str, http, timeout: float = 10.0, reactor=None) -> None:
        self.name = name
        self.url = url
        self.http = http
        self.timeout = timeout
        self.reactor = reactor if reactor is not None else http.reactor

    async def _send(self, notification: Notification) -> Delivery:
        body = json.dumps(slack_message(notification.payload), ensure_ascii=False).encode("utf-8")
        try:
            response = await self.http.post(
                self.url, body, {b"Content-Type": [b"application/json; charset=utf-8"]}, self.timeout
            )
        except Exception as e:
            error = redact(f"{e.__class__.__name__}: {e}", channel_secrets({"kind": "slack", "url": self.url}))
            return Delivery(RETRY, None, f"cannot reach Slack: {error}")
        text = (await read_body(response)).decode("utf-8", "replace").strip()[:200]
        code = response.code
        if code == 200:
            return Delivery(SENT, code, text or "ok")
        if code == 429:
            wait = retry_after(response.headers.getRawHeaders(b"retry-after", [None])[0], self.reactor.seconds())
            return Delivery(RETRY, code, f"rate limited: {text}".strip(": "), wait if wait is not None else 30.0)
        if code in (403, 404, 410):
            return Delivery(DISABLE, code, f"Slack refused the webhook: {text or code}")
        if code >= 500:
            return Delivery(RETRY, code, f"Slack error: {text}".strip(": "))
        return Delivery(FAILED, code, f"Slack rejected the message: {text}".strip(": "))

    def send(self, notification: Notification):
        return ensureDeferred(self._send(notification))
