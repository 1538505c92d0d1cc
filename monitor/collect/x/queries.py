"""
X search queries and stream rules built from the tracked topics, in X's
query syntax.
"""

from __future__ import annotations

from typing import Optional

#: The longest query recent search takes; longer ones are refused by X.
MAX_QUERY = 512


def _term(term: str) -> Optional[str]:
    """
    One topic term in X's query syntax; C{None} for what X cannot search
    (handles of other networks).
    """
    t = term.strip()
    phrase = len(t) >= 2 and t[0] == t[-1] == '"'
    if phrase:
        t = t[1:-1].strip()
    t = t.replace('"', "")
    if not t:
        return None
    if not phrase and t[0] in "#@$" and len(t) > 1 and (t[1:].replace("_", "").isalnum()):
        return t
    if t.startswith("@"):
        return None  # @user@mastodon.example, @user.bsky.social: not an X handle
    if phrase or t.upper() in ("OR", "AND") or t[0] == "-" or not t.replace("_", "").isalnum():
        return f'"{t}"'
    return t


def topic_query(topic, exclude_retweets: bool = True) -> Optional[str]:
    """
    The X query for a topic: its terms and variants ORed, its exclusions
    negated, its languages as C{lang:}.  C{None} if no term is searchable.
    """
    terms = []
    for t in (*topic.terms, *topic.variants):
        x = _term(t)
        if x is not None and x not in terms:
            terms.append(x)
    if not terms:
        return None
    q = terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"
    for ex in topic.exclude:
        x = _term(ex)
        if x is not None:
            q += " -" + x
    langs = []
    for lang in topic.languages:
        code = lang.split("-")[0].lower()
        if code and code not in langs:
            langs.append(code)
    if len(langs) == 1:
        q += f" lang:{langs[0]}"
    elif langs:
        q += " (" + " OR ".join(f"lang:{c}" for c in langs) + ")"
    if exclude_retweets:
        q += " -is:retweet"
    return q


def queries_for(source_name: str, queries, topics, exclude_retweets: bool = True) -> list[tuple[str, str]]:
    """
    (tag, query) pairs: the configured queries (tagged by themselves) or one
    per topic that may come from this source (tagged by the topic name).
    """
    if queries:
        return [(q[:256], q) for q in dict.fromkeys(queries)]
    out = []
    for topic in topics:
        if topic.sources and source_name not in topic.sources:
            continue
        q = topic_query(topic, exclude_retweets)
        if q is not None:
            out.append((topic.name, q))
    return out


__all__ = ["MAX_QUERY", "queries_for", "topic_query"]
