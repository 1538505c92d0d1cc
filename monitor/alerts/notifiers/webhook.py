"""
Outgoing webhooks, signed as Standard Webhooks (PROTOCOLS.md 6.4).

Every request carries C{webhook-id} (the notification id: the same across
retries, so receivers can drop duplicates), C{webhook-timestamp} (unix
seconds of this attempt) and, with a secret, C{webhook-signature:
v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">}.  A C{whsec_} secret
is base64; its decoded bytes are the key.  Any other secret is used as its
UTF-8 bytes.

The body: C{{"type": "incident.opened", "timestamp": ..., "data": {"event":
..., "incident": {...}}}}.

Outcomes: 2xx sent; 429 retry after C{Retry-After}; 5xx, 408 and network
errors retry; 401, 403, 404 and 410 disable the channel (wrong secret or
address, gone); other 4xx fail this notification.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Optional

from twisted.internet.defer import ensureDeferred
from zope.interface import implementer

from monitor.alerts.notifiers import DISABLE, FAILED, RETRY, SENT, Delivery, Notification, retry_after
from monitor.alerts.notifiers.http import read_body
from monitor.interfaces import INotifier
from monitor.model import iso8601
from monitor.redact import redact, redact_url

__all__ = ["WebhookNotifier", "secret_key", "sign", "verify", "webhook_body"]


def secret_key(secret: str) -> bytes:
    """
    The HMAC key of a secret: the base64-decoded part of C{whsec_...}, or
    the UTF-8 bytes of anything else.
    """
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_") :])
    return secret.encode("utf-8")


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """
    The C{webhook-signature} value for one request.
    """
    signed = f"{msg_id}.{timestamp}.".encode("utf-8") + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(key: bytes, headers: dict, body: bytes, now: float, tolerance: float = 300.0) -> bool:
    """
    What a receiver does: recompute the signature over the raw body and
    compare in constant time with each given one; refuse stale timestamps.
    C{headers} maps lower-case names to values.
    """
    try:
        msg_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        given = headers["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(key, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, g) for g in given)


def webhook_body(notification: Notification, now: float) -> bytes:
    payload = {
        "type": f"incident.{notification.event}",
        "timestamp": iso8601(now),
        "data": notification.payload,
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@implementer(INotifier)
class WebhookNotifier:
    """
    POST incident events as signed JSON to one URL.
    """

    kind = "webhook"

    def __init__(self, name: str, url: str, http, secret: Optional[str] = None, timeout: float = 10.0, reactor=None):
        self.name = name
        self.url = url
        self.http = http
        self.key = secret_key(secret) if secret else None
        self.timeout = timeout
        self.reactor = reactor if reactor is not None else http.reactor

    def headers(self, notification: Notification, body: bytes, now: float) -> dict:
        timestamp = int(now)
        headers = {
            b"Content-Type": [b"application/json; charset=utf-8"],
            b"webhook-id": [notification.id.encode("ascii")],
            b"webhook-timestamp": [str(timestamp).encode("ascii")],
        }
        if self.key is not None:
            headers[b"webhook-signature"] = [sign(self.key, notification.id, timestamp, body).encode("ascii")]
        return headers

    async def _send(self, notification: Notification) -> Delivery:
        now = self.reactor.seconds()
        body = webhook_body(notification, now)
        try:
            response = await self.http.post(self.url, body, self.headers(notification, body, now), self.timeout)
        except Exception as e:
            error = redact(f"{e.__class__.__name__}: {e}", [self.url])
            return Delivery(RETRY, None, f"cannot reach {redact_url(self.url)}: {error}")
        text = (await read_body(response)).decode("utf-8", "replace").strip()[:200]
        code = response.code
        if 200 <= code < 300:
            return Delivery(SENT, code, text)
        if code == 429:
            wait = retry_after(response.headers.getRawHeaders(b"retry-after", [None])[0], self.reactor.seconds())
            return Delivery(RETRY, code, f"rate limited {text}".strip(), wait if wait is not None else 30.0)
        if code in (401, 403, 404, 410):
            return Delivery(DISABLE, code, f"the receiver refused the webhook ({code}) {text}".strip())
        if code >= 500 or code == 408:
            return Delivery(RETRY, code, text or f"HTTP {code}")
        return Delivery(FAILED, code, text or f"HTTP {code}")

    def send(self, notification: Notification):
        return ensureDeferred(self._send(notification))
