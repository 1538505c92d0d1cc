"""
Bluesky records as Jetstream carries them: a post's text, facets (links,
mentions, hashtags, with UTF-8 byte offsets) and the other fields a post
keeps, read without trusting any of them.
"""

from __future__ import annotations

import re
from typing import Any

from monitor.collect.base import clean
from monitor.model import Post, parse_time

POST_COLLECTION = "app.bsky.feed.post"

#: What atproto allows in a DID and a record key; anything else in a frame
#: is a broken frame, not an id to store.
DID = re.compile(r"^did:[a-z]+:[A-Za-z0-9._:%-]{1,2048}$")
RKEY = re.compile(r"^[A-Za-z0-9._:~-]{1,512}$")


class MalformedEvent(ValueError):
    """
    A frame that is not a Jetstream event we can read; C{reason} says why.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def str_field(d: dict, key: str, where: str) -> str:
    """
    C{d[key]}, which must be a string; else L{MalformedEvent} naming it.
    """
    value = d.get(key)
    if not isinstance(value, str):
        raise MalformedEvent(f"{where}{key}: must be a string, not {type(value).__name__}")
    return value


def read_facets(text: str, facets: Any) -> tuple[str, dict[str, list]]:
    """
    The text with shortened links written out in full, and the hashtags,
    mentions and links the facets mark.  Facet offsets count UTF-8 bytes,
    not characters: an emoji before a link moves it by four.  A facet with
    impossible offsets is skipped, never fatal (clients write bad ones).
    """
    raw = text.encode("utf-8")
    found: dict[str, list] = {"hashtags": [], "mentions": [], "links": []}
    replacements: list[tuple[int, int, bytes]] = []
    if not isinstance(facets, list):
        return text, found
    for facet in facets:
        if not isinstance(facet, dict):
            continue
        index, features = facet.get("index"), facet.get("features")
        span = start = end = None
        if isinstance(index, dict):
            start, end = index.get("byteStart"), index.get("byteEnd")
            if type(start) is int and type(end) is int and 0 <= start < end <= len(raw):
                try:
                    span = raw[start:end].decode("utf-8")
                except UnicodeDecodeError:
                    span = None  # offsets inside a character
        for feature in features if isinstance(features, list) else ():
            if not isinstance(feature, dict):
                continue
            kind = feature.get("$type")
            if kind == "app.bsky.richtext.facet#tag" and isinstance(feature.get("tag"), str):
                tag = clean(feature["tag"]).lstrip("#")
                if tag and tag not in found["hashtags"]:
                    found["hashtags"].append(tag)
            elif kind == "app.bsky.richtext.facet#mention" and isinstance(feature.get("did"), str):
                handle = span[1:] if span and span.startswith("@") else None
                found["mentions"].append({"did": clean(feature["did"]), "handle": handle and clean(handle)})
            elif kind == "app.bsky.richtext.facet#link" and isinstance(feature.get("uri"), str):
                uri = clean(feature["uri"])
                if uri not in found["links"]:
                    found["links"].append(uri)
                # Clients show "acme.example/sta..." for a long link; the
                # whole address is what people search for.  Display text
                # that is not a form of the address ("click here") stays.
                core = span.rstrip(".…") if span else ""
                if core and span != uri and (uri.split("://", 1)[-1].startswith(core) or uri.startswith(core)):
                    replacements.append((start, end, uri.encode("utf-8")))
    if replacements:
        replacements.sort()
        out, at = [], 0
        for start, end, new in replacements:
            if start < at:
                continue  # overlapping facets: keep the first
            out += [raw[at:start], new]
            at = end
        out.append(raw[at:])
        text = b"".join(out).decode("utf-8")
    return text, found


def post_from_commit(source: str, did: str, time_us: int, commit: dict) -> Post:
    """
    The post a Jetstream C{create} commit of an C{app.bsky.feed.post}
    carries.  Raises L{MalformedEvent} for a record we cannot read.
    """
    rkey = commit["rkey"]
    record = commit.get("record")
    if not isinstance(record, dict):
        raise MalformedEvent("commit.record: must be an object")
    text = clean(str_field(record, "text", "commit.record."))
    received = time_us / 1e6
    try:
        created = parse_time(record.get("createdAt"))
    except (ValueError, TypeError, OverflowError):
        created = received
    # createdAt is the client's word; one from the future is not believed.
    if created > received + 300:
        created = received
    text, found = read_facets(text, record.get("facets"))
    tags = record.get("tags")
    for tag in tags if isinstance(tags, list) else ():
        if isinstance(tag, str) and tag.lstrip("#") and clean(tag.lstrip("#")) not in found["hashtags"]:
            found["hashtags"].append(clean(tag.lstrip("#")))
    langs = record.get("langs")
    lang = langs[0] if isinstance(langs, list) and langs and isinstance(langs[0], str) else None
    extra: dict[str, Any] = {"did": did, **found}
    reply = record.get("reply")
    if isinstance(reply, dict) and isinstance(reply.get("parent"), dict):
        parent = reply["parent"].get("uri")
        if isinstance(parent, str):
            extra["reply_to"] = clean(parent)
    embed = record.get("embed")
    if isinstance(embed, dict) and isinstance(embed.get("external"), dict):
        uri = embed["external"].get("uri")
        if isinstance(uri, str) and clean(uri) not in found["links"]:
            found["links"].append(clean(uri))
    return Post(
        source=source,
        network="bluesky",
        native_id=f"at://{did}/{POST_COLLECTION}/{rkey}",
        text=text,
        author=did,
        created_at=created,
        url=f"https://bsky.app/profile/{did}/post/{rkey}",
        lang=clean(lang)[:35] if lang else None,
        extra=extra,
    )


__all__ = ["DID", "POST_COLLECTION", "RKEY", "MalformedEvent", "str_field", "post_from_commit", "read_facets"]
