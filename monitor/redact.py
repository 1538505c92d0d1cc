"""
Credentials in URLs, kept out of everything the hub shows or logs.

Integrations put secrets in URLs (C{https://user:pass@host/},
C{.../hook?apikey=...}, a Slack webhook's path).  Anything that prints an
endpoint, or an error that may quote one, goes through L{redact}: every
URL in the text loses its userinfo and its query values, and the given
secrets (a channel's whole URL, its password) are masked wherever they
appear, however an error message quoted them.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

__all__ = ["MASK", "channel_secrets", "redact", "redact_url", "url_secrets"]

MASK = "***"

#: Shorter strings are too likely to occur by chance to be masked.
_SHORTEST = 4
_URL = re.compile(r"""\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'"<>`]+""")


def redact_url(url: Optional[str]) -> Optional[str]:
    """
    C{url} without its secrets: C{***@} for userinfo, C{***} for each
    query value (the names stay, they say what was configured), no
    fragment.  Text that does not parse as a URL is masked whole.
    """
    if not url:
        return url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        query = "&".join(
            (quote(name, safe="") + "=" + MASK) if sep else piece
            for piece in query.split("&")
            for name, sep, _ in [piece.partition("=")]
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def url_secrets(url: Optional[str]) -> list[str]:
    """
    The parts of C{url} that must never be shown: its userinfo and its
    query values (raw and decoded).
    """
    if not url:
        return []
    found: list[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found += [userinfo, *userinfo.split(":", 1)]
    for piece in parts.query.split("&"):
        found.append(piece.partition("=")[2])
    found += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    return [s for s in found if len(s) >= _SHORTEST]


def redact(text, secrets: Iterable[Optional[str]] = ()) -> str:
    """
    C{text} (anything; it is made a string) with every URL in it redacted
    (L{redact_url}) and every one of C{secrets} masked.  A secret that is
    a URL also masks the secrets inside it.
    """
    text = str(text)
    masks: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        if "://" in secret:
            masks.update(url_secrets(secret))
            whole = redact_url(secret)
            if whole != secret:
                text = text.replace(secret, whole)
        elif len(secret) >= _SHORTEST:
            masks.add(secret)
    text = _URL.sub(lambda m: redact_url(m.group()), text)
    for secret in sorted(masks, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def channel_secrets(spec: dict) -> list[str]:
    """
    What of an alert channel's table must never be shown: its URL (and,
    for Slack, whose webhook URL is itself the credential, its path), the
    webhook signing secret and the SMTP password.
    """
    found = [spec.get(key) for key in ("url", "secret", "password")]
    if spec.get("kind") == "slack" and spec.get("url"):
        try:
            found.append(urlsplit(spec["url"]).path)
        except ValueError:
            pass
    return [s for s in found if isinstance(s, str) and s]
