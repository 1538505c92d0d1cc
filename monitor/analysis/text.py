"""
The plain text of a post, as the scorer and the classifier should see it.

Sources disagree on what "text" is: Mastodon sends sanitised HTML, X and
older Twitter data escape C{&}, C{<} and C{>} as entities, Bluesky and RSS
titles are plain.  L{plain_text} turns all of them into one form without
damaging ordinary text, because people write C{<3}, C{a < b > c} and
C{AT&T} far more often than they write markup.

The contract, relied on by the tests and by score equality between the hub
and the nodes:

  - A string with no C{<} and no C{&} comes back as
    C{" ".join(s.split())}: whitespace collapsed, nothing else touched.
    VADER splits on the same whitespace, so its scores are unchanged.
  - Otherwise tags are removed first, then entities are decoded once, then
    whitespace is collapsed.  Decoding after stripping means escaped markup
    (C{&lt;script&gt;}) ends up as literal text and is never parsed again.
    Hence C{plain_text("<p>" + html.escape(s) + "</p>")} equals
    C{" ".join(s.split())} for every C{s}.
  - A tag is a comment, a doctype, or a start or end tag of a real HTML
    element whose attributes all have values.  Inline elements (C{span},
    C{a}, C{b} ...) vanish, any other becomes a space.  The content between
    tags is always kept, even inside C{<script>}: it is text someone wrote.
  - An entity is decoded only when it ends in C{;}.
"""

from __future__ import annotations

import html
import re

__all__ = ["plain_text"]

# Elements that only style a run of text: removing them must not split a
# word (Mastodon writes "@<span>acme</span>" and splits long links into
# several spans).  Every other element is replaced by a space.
_INLINE = frozenset(
    """
    a abbr b bdi bdo big cite code data del dfn em font i ins kbd mark q s
    samp small span strike strong sub sup time tt u var wbr
    """.split()
)

# Only names of real HTML elements count as tags, so "<sarcasm>" or
# "x<y and y>z" stay as they were written.
_ELEMENTS = _INLINE | frozenset(
    """
    address area article aside audio base blockquote body br button canvas
    caption center col colgroup datalist dd details dialog dir div dl dt
    embed fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 head
    header hgroup hr html iframe img input label legend li link main map
    menu meta meter nav noscript object ol optgroup option output p param
    picture pre progress rp rt ruby script search section select slot
    source style summary table tbody td template textarea tfoot th thead
    title tr track ul video
    """.split()
)

# An attribute must have a value: a bare word inside angle brackets is far
# more often prose ("if a<b and c>d") than a boolean attribute, and the
# HTML our sources send (Mastodon, feeds) writes values.  No part of a tag
# may contain "<", so a failed match never scans past the next "<" and
# stripping stays linear however hostile the text.
_ATTRIBUTE = r"""[^\s"'<>/=]+\s*=\s*(?:"[^"<]*"|'[^'<]*'|[^\s"'<>=`]+)"""
_TAG_RE = re.compile(
    rf"""
    <!doctype\b[^<>]*>
  | </?(?P<name>[a-z][a-z0-9]*)(?:\s+{_ATTRIBUTE})*\s*/?>
    """,
    re.IGNORECASE | re.VERBOSE,
)

# Only entities closed by a semicolon: html.unescape alone would also decode
# legacy forms such as "&not" and "&reg" and turn "me&notyou" into "me¬you".
_ENTITY_RE = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")


def _drop_comments(s: str) -> str:
    # With str.find rather than a regex: an unclosed "<!--" repeated many
    # times would make a lazy ".*?-->" quadratic.
    out = []
    i = 0
    while (j := s.find("<!--", i)) >= 0 and (k := s.find("-->", j + 4)) >= 0:
        out.append(s[i:j])
        out.append(" ")
        i = k + 3
    out.append(s[i:])
    return "".join(out)


def _tag(match: re.Match) -> str:
    name = match.group("name")
    if name is None:
        return " "
    name = name.lower()
    if name not in _ELEMENTS:
        return match.group(0)
    return "" if name in _INLINE else " "


def _entity(match: re.Match) -> str:
    return html.unescape(match.group(0))


def plain_text(s: str) -> str:
    """
    Return the plain text of C{s}: tags of real HTML elements stripped,
    entities decoded once, whitespace collapsed and stripped.
    """
    if "<" not in s and "&" not in s:
        return " ".join(s.split())
    if "<" in s:
        s = _TAG_RE.sub(_tag, _drop_comments(s))
    if "&" in s:
        s = _ENTITY_RE.sub(_entity, s)
    return " ".join(s.split())
