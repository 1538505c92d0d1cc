"""
Why a post matches: the topic editor's "Try it" and the highlighted words
of a query search.

Post text is hostile, so a highlighted text is never markup built here: it
is a list of C{(piece, marked)} pairs cut from the text as written, which
the template escapes piece by piece (C{_marked.html}).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from monitor.match import CompiledTopic, Matcher, compile_topic
from monitor.model import Post, Topic, iso8601
from monitor.query import Doc, Node, StoredPost, highlights, reasons
from monitor.words import token_spans

__all__ = ["TRY_SHOWN", "post_segments", "segments", "try_draft"]

#: Posts shown per list (matches, gained, lost) in a try.
TRY_SHOWN = 25


def segments(text: str, marked: Iterable[int]) -> list[tuple[str, bool]]:
    """
    C{text} cut into pieces, each marked or not, the marked ones being the
    tokens (L{monitor.words.token_spans}) numbered in C{marked}; adjacent
    marked tokens and what lies between them make one piece.
    """
    text = text or ""
    marked = set(marked)
    spans = token_spans(text) if marked else []
    out: list[tuple[str, bool]] = []
    at = 0
    for i, (a, b) in enumerate(spans):
        if i not in marked:
            continue
        if i - 1 in marked and out and out[-1][1]:
            out[-1] = (out[-1][0] + text[at:b], True)
        else:
            if a > at:
                out.append((text[at:a], False))
            out.append((text[a:b], True))
        at = b
    if at < len(text) or not out:
        out.append((text[at:], False))
    return out


def _why(plan: CompiledTopic, post) -> tuple[set[int], list[str]]:
    """
    The tokens to mark and the terms or clauses that made C{plan} match
    C{post}.
    """
    doc = Doc(post)
    marked: set[int] = set()
    why: list[str] = []
    for t in plan.terms:
        found = doc.spans(t)
        if found:
            why.append(t.text)
            for a, b in found:
                marked.update(range(a, b + 1))
    if plan.query is not None:
        marked |= highlights(plan.query, doc)
        why += reasons(plan.query, doc)
    return marked, list(dict.fromkeys(why))


def _card(post: Post, plan: CompiledTopic) -> dict[str, Any]:
    marked, why = _why(plan, post)
    return {
        "author": post.author,
        "source": post.source,
        "created_at": iso8601(post.created_at),
        "url": post.url,
        "sentiment": (post.extra or {}).get("sentiment"),
        "segments": segments(post.text, marked),
        "why": why,
    }


def try_draft(draft: Topic, current: Optional[Topic], posts: list[Post]) -> dict[str, Any]:
    """
    What C{draft} matches among C{posts} (newest first), and against the
    saved C{current} version of the topic (C{None} for a new topic): the
    posts it gains and the posts it loses.  Runs in a thread: it matches
    every post twice.
    """
    draft_plan = compile_topic(draft)
    draft_matcher = Matcher([draft])
    current_plan = compile_topic(current) if current is not None else None
    current_matcher = Matcher([current]) if current is not None else None
    matched, gained, lost = [], [], []
    for post in posts:
        now = bool(draft_matcher.match(post))
        before = bool(current_matcher.match(post)) if current_matcher is not None else False
        if now:
            matched.append(post)
            if current is not None and not before:
                gained.append(post)
        elif before:
            lost.append(post)
    return {
        "checked": len(posts),
        "count": len(matched),
        "compared": current is not None,
        "current_count": len(matched) - len(gained) + len(lost),
        "gained_count": len(gained),
        "lost_count": len(lost),
        "posts": [_card(p, draft_plan) for p in matched[:TRY_SHOWN]],
        "gained": [_card(p, draft_plan) for p in gained[:TRY_SHOWN]],
        # A lost post is marked with what made the current version match it.
        "lost": [_card(p, current_plan) for p in lost[:TRY_SHOWN]] if current_plan is not None else [],
    }


def post_segments(tree: Node, post: dict[str, Any]) -> list[tuple[str, bool]]:
    """
    A stored post's text (an API post dict) with the words that satisfy
    the query C{tree} marked.
    """
    stored = StoredPost(
        post.get("text"), post.get("author"), post.get("lang"), post.get("source"),
        post.get("likes"), post.get("reposts"), post.get("replies"),
        post.get("author_followers"), post.get("author_verified"), post.get("lat"), post.get("lon"),
    )  # fmt: skip
    return segments(post.get("text") or "", highlights(tree, Doc(stored)))
