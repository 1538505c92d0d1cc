"""
The topic query language: Boolean queries with proximity, wildcards, fuzzy
words and field filters, as analysts write them in commercial listening
tools::

    (acme OR @acmesupport) AND (refund OR "charged twice") NOT giveaway
    outage NEAR/3 acme
    refund* -lang:de likes:>=100

L{parse} turns a query into a tree of nodes (L{Term}, L{Field}, L{Not},
L{And}, L{Or}, L{Near}), or raises L{QueryError} with the position and what
was expected there.  The grammar, loosest first (so C{NOT} binds tighter
than C{AND}, which binds tighter than C{OR})::

    query   := or END
    or      := and ("OR" and)*
    and     := unary (["AND"] unary)*        # side by side means AND
    unary   := ("NOT" | "-") unary | near
    near    := primary (("NEAR/n" | "ONEAR/n") primary)*
    primary := "(" or ")" | FIELD | TERM ["~1"]

Operators are upper case; a lower-case C{and} is a word.  A term matches like
a topic's term (L{monitor.match}): case and accent insensitive, whole words,
a plain word also matching its C{#hashtag} and C{@handle} forms.

Evaluation works on a L{Doc}: a post's tokens (made once, only when a query
needs them) and its fields.  The matcher (L{monitor.match.Matcher}) finds
which terms may occur with one automaton pass, then evaluates the trees of
the topics those terms can satisfy.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional

from monitor.words import (
    FUZZY_MIN_TERM,
    FUZZY_MIN_TOKEN,
    language_key,
    TOKEN,
    normalize,
    within_one_edit,
)

__all__ = [
    "And",
    "Doc",
    "Field",
    "Near",
    "Not",
    "Or",
    "QueryError",
    "StoredPost",
    "Term",
    "highlights",
    "matches",
    "parse",
    "reasons",
    "term",
    "triggers",
]

#: The longest query accepted (characters); longer ones are refused.
MAX_QUERY = 4000
#: The deepest nesting accepted, so a hostile query cannot exhaust the stack.
MAX_DEPTH = 50
#: The widest NEAR distance accepted.
MAX_NEAR = 100

_QUOTES = {'"': '"', "\u201c": "\u201d", "\u201e": "\u201d"}
#: The tokens of a term, with C{*} and C{?} kept as word characters.
_TERM_TOKEN = re.compile(r"(?:(?<![\w*?])([#@]))?([\w*?]+)")
_NEAR = re.compile(r"(O?NEAR)(?:/(\d+))?")
_COMPARE = re.compile(r"(>=|<=|>|<|=)?(\d{1,12})")
_LINK = re.compile(r"(?i)\bhttps?://|\bwww\.")

#: Field name -> the Post attribute compared with a number.
NUMERIC_FIELDS = {
    "likes": "likes",
    "reposts": "reposts",
    "replies": "replies",
    "followers": "author_followers",
}
FIELDS = ("author", "lang", "source", *NUMERIC_FIELDS, "verified", "has")


class QueryError(ValueError):
    """
    A query that does not parse.

    @ivar position: where the problem is, counted in characters from 1.
    @ivar expected: what would have been valid there.
    """

    def __init__(self, query: str, offset: int, expected: str, found: Optional[str] = None) -> None:
        self.query = query
        self.position = offset + 1
        self.expected = expected
        if found is None:
            found = repr(query[offset : offset + 12]) if offset < len(query) else "the end of the query"
        self.found = found
        super().__init__(f"at position {self.position}: expected {expected}, found {found}")


# -- the tree ---------------------------------------------------------------------


class Node:
    __slots__ = ("offset",)

    #: Whether this node yields word positions (so NEAR can use it).
    positional = False


class Term(Node):
    """
    A word, phrase, hashtag, handle or wildcard: a sequence of token
    patterns, each an exact word or a compiled wildcard, the first with the
    C{#}/C{@} it demands (C{""}: any).
    """

    __slots__ = ("text", "elements", "sigil", "fuzzy", "key")
    positional = True

    def __init__(self, text: str, elements: tuple, sigil: str, fuzzy: bool, offset: int = 0) -> None:
        self.text = text
        self.elements = elements
        self.sigil = sigil
        self.fuzzy = fuzzy
        self.offset = offset
        #: Two terms with the same key match the same words.
        self.key = (sigil, fuzzy, tuple(e if isinstance(e, str) else e.pattern for e in elements))

    def spans(self, doc: "Doc") -> list[tuple[int, int]]:
        return doc.spans(self)

    def __repr__(self) -> str:
        return f"Term({self.text!r})"


class Field(Node):
    """
    A filter on the post's metadata (C{author:}, C{lang:}, C{likes:>=100}...).
    """

    __slots__ = ("name", "op", "value", "text")

    def __init__(self, name: str, op: str, value: Any, text: str, offset: int = 0) -> None:
        self.name, self.op, self.value, self.text, self.offset = name, op, value, text, offset

    def __repr__(self) -> str:
        return f"Field({self.text!r})"


class Not(Node):
    __slots__ = ("child",)

    def __init__(self, child: Node, offset: int = 0) -> None:
        self.child, self.offset = child, offset

    def __repr__(self) -> str:
        return f"Not({self.child!r})"


class And(Node):
    __slots__ = ("children",)

    def __init__(self, children: Iterable[Node], offset: int = 0) -> None:
        self.children, self.offset = tuple(children), offset

    def __repr__(self) -> str:
        return f"And{self.children!r}"


class Or(Node):
    __slots__ = ("children",)

    def __init__(self, children: Iterable[Node], offset: int = 0) -> None:
        self.children, self.offset = tuple(children), offset

    @property
    def positional(self) -> bool:  # type: ignore[override]
        return all(c.positional for c in self.children)

    def __repr__(self) -> str:
        return f"Or{self.children!r}"


class Near(Node):
    """
    Both sides at most C{distance} words apart (C{"a b"}: 1 apart), in
    either order, or with C{ordered} left before right.
    """

    __slots__ = ("left", "right", "distance", "ordered")
    positional = True

    def __init__(self, left: Node, right: Node, distance: int, ordered: bool, offset: int = 0) -> None:
        self.left, self.right, self.distance, self.ordered, self.offset = left, right, distance, ordered, offset

    def __repr__(self) -> str:
        op = "ONEAR" if self.ordered else "NEAR"
        return f"{op}/{self.distance}({self.left!r}, {self.right!r})"


# -- terms --------------------------------------------------------------------------


def _element(token: str, query: str, offset: int):
    if "*" not in token and "?" not in token:
        return token
    if sum(1 for c in token if c not in "*?") < 2:
        raise QueryError(query, offset, "a wildcard with at least 2 letters besides * and ?")
    pattern = "".join(r"\w*" if c == "*" else r"\w" if c == "?" else re.escape(c) for c in token)
    return re.compile(pattern)


def term(text: str, fuzzy: bool = False, query: Optional[str] = None, offset: int = 0) -> Term:
    """
    The L{Term} for C{text} (a word, phrase, hashtag, handle or wildcard; the
    quotes of a phrase already removed).  Raises L{QueryError} if it holds
    nothing to match.  Topic terms go through here too, so both agree.
    """
    query = text if query is None else query
    tokens = [(m[1] or "", m[2]) for m in _TERM_TOKEN.finditer(normalize(text))]
    if not tokens:
        raise QueryError(query, offset, "a word, phrase, #hashtag or @handle")
    elements = tuple(_element(word, query, offset) for _, word in tokens)
    sigil = tokens[0][0]
    if fuzzy:
        word = elements[0]
        if len(elements) != 1 or sigil or not isinstance(word, str) or len(word) < FUZZY_MIN_TERM:
            raise QueryError(query, offset, f"a single plain word of {FUZZY_MIN_TERM} or more letters before ~1")
    return Term(text, elements, sigil, fuzzy, offset)


# -- the parser ---------------------------------------------------------------------


class _Lexeme:
    __slots__ = ("kind", "value", "offset", "end")

    def __init__(self, kind: str, value: Any, offset: int, end: int) -> None:
        self.kind, self.value, self.offset, self.end = kind, value, offset, end


_STOP = set(' \t\r\n()"\u201c\u201d\u201e')


def _lex(query: str) -> list[_Lexeme]:
    out: list[_Lexeme] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c.isspace():
            i += 1
        elif c in "()":
            out.append(_Lexeme(c, c, i, i + 1))
            i += 1
        elif c in _QUOTES:
            close = query.find(_QUOTES[c], i + 1)
            if close < 0:
                raise QueryError(query, n, f"a closing quote for the phrase opened at position {i + 1}")
            end = close + 1
            out.append(_Lexeme("phrase", query[i + 1 : close], i, end))
            i = end
            if query.startswith("~", i):
                raise QueryError(query, i, "no ~ after a phrase (fuzzy matching is for single words)")
        elif c == "-" and _starts_not(query, i):
            out.append(_Lexeme("NOT", "-", i, i + 1))
            i += 1
        else:
            j = i
            while j < n and query[j] not in _STOP:
                j += 1
            out.append(_word(query, i, j))
            i = j
    out.append(_Lexeme("end", None, n, n))
    return out


def _starts_not(query: str, i: int) -> bool:
    """
    Whether the C{-} at C{i} is a short NOT: at the start of a term (after
    a space or C{(}) and followed by something to negate.
    """
    if i + 1 >= len(query) or query[i + 1].isspace() or query[i + 1] == ")":
        return False
    return i == 0 or query[i - 1].isspace() or query[i - 1] == "("


def _word(query: str, start: int, end: int) -> _Lexeme:
    """
    One run of non-space characters: an operator, a field filter or a term.
    """
    raw = query[start:end]
    if raw in ("AND", "OR", "NOT"):
        return _Lexeme(raw, raw, start, end)
    m = _NEAR.fullmatch(raw)
    if m:
        if m[2] is None:
            raise QueryError(query, start + len(m[1]), f"a distance after {m[1]}, as in {m[1]}/3")
        distance = int(m[2])
        if not 1 <= distance <= MAX_NEAR:
            raise QueryError(query, start + len(m[1]) + 1, f"a distance from 1 to {MAX_NEAR}")
        return _Lexeme("NEAR", (distance, m[1] == "ONEAR"), start, end)
    if raw.startswith(("NEAR/", "ONEAR/")):
        at = raw.index("/") + 1
        raise QueryError(query, start + at, "a whole number of words")
    name, colon, value = raw.partition(":")
    if colon and name.lower() in FIELDS:
        return _Lexeme("field", _field(query, name.lower(), value, start, start + len(name) + 1), start, end)
    fuzzy = False
    text = raw
    tilde = raw.rfind("~")
    if tilde > 0 and raw[tilde + 1 :].isdigit():
        if raw[tilde + 1 :] != "1":
            raise QueryError(query, start + tilde + 1, "~1 (one edit is the only fuzziness)")
        fuzzy, text = True, raw[:tilde]
    return _Lexeme("term", term(text, fuzzy, query, start), start, end)


def _field(query: str, name: str, value: str, start: int, at: int) -> Field:
    text = f"{name}:{value}"
    if not value:
        raise QueryError(query, at, f"a value after {name}:")
    if name in NUMERIC_FIELDS:
        m = _COMPARE.fullmatch(value)
        if not m:
            raise QueryError(query, at, f"a number, maybe after >=, >, <=, < or =, as in {name}:>=100")
        return Field(name, m[1] or "=", int(m[2]), text, start)
    if name == "verified":
        v = value.lower()
        if v not in ("true", "false", "yes", "no"):
            raise QueryError(query, at, "true or false")
        return Field(name, "=", v in ("true", "yes"), text, start)
    if name == "has":
        v = value.lower()
        if v not in ("link", "geo"):
            raise QueryError(query, at, "link or geo")
        return Field(name, "=", v, text, start)
    if name == "lang":
        if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*", value):
            raise QueryError(query, at, "a language tag such as en, pt-BR or und")
        return Field(name, "=", language_key(value), text, start)
    if name == "author":
        v = normalize(value.lstrip("@"))
        if "*" in v or "?" in v:
            pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in v)
            return Field(name, "~", re.compile(pattern, re.S), text, start)
        return Field(name, "=", v, text, start)
    return Field(name, "=", value, text, start)


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.lexemes = _lex(query)
        self.i = 0
        self.depth = 0

    @property
    def peek(self) -> _Lexeme:
        return self.lexemes[self.i]

    def take(self) -> _Lexeme:
        lexeme = self.lexemes[self.i]
        self.i += 1
        return lexeme

    def fail(self, expected: str, lexeme: Optional[_Lexeme] = None):
        lexeme = lexeme or self.peek
        raise QueryError(self.query, lexeme.offset, expected)

    def parse(self) -> Node:
        node = self.or_()
        if self.peek.kind == ")":
            self.fail("an operator or a term (this ) closes nothing)")
        if self.peek.kind != "end":
            self.fail("an operator or the end of the query")
        return node

    def or_(self) -> Node:
        start = self.peek.offset
        children = [self.and_()]
        while self.peek.kind == "OR":
            self.take()
            children.append(self.and_())
        return children[0] if len(children) == 1 else Or(children, start)

    def and_(self) -> Node:
        start = self.peek.offset
        children = [self.unary()]
        while True:
            kind = self.peek.kind
            if kind == "AND":
                self.take()
            elif kind not in ("NOT", "(", "term", "phrase", "field"):
                break
            children.append(self.unary())
        return children[0] if len(children) == 1 else And(children, start)

    def unary(self) -> Node:
        if self.peek.kind == "NOT":
            lexeme = self.take()
            self.enter(lexeme)
            child = self.unary()
            self.depth -= 1
            return Not(child, lexeme.offset)
        return self.near()

    def near(self) -> Node:
        node = self.primary()
        while self.peek.kind == "NEAR":
            lexeme = self.take()
            right = self.primary()
            distance, ordered = lexeme.value
            for side in (node, right):
                if not side.positional:
                    raise QueryError(
                        self.query,
                        side.offset,
                        "words, phrases or OR groups of them on each side of NEAR (not AND, NOT or fields)",
                    )
            node = Near(node, right, distance, ordered, node.offset)
        return node

    def primary(self) -> Node:
        lexeme = self.peek
        if lexeme.kind == "(":
            self.take()
            self.enter(lexeme)
            node = self.or_()
            self.depth -= 1
            if self.peek.kind != ")":
                self.fail(f"a ) to close the ( at position {lexeme.offset + 1}")
            self.take()
            return node
        if lexeme.kind == "term":
            self.take()
            return lexeme.value
        if lexeme.kind == "phrase":
            self.take()
            return term(lexeme.value, False, self.query, lexeme.offset)
        if lexeme.kind == "field":
            self.take()
            return lexeme.value
        self.fail('a word, "phrase", #hashtag, @handle, field filter or (')

    def enter(self, lexeme: _Lexeme) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(self.query, lexeme.offset, f"at most {MAX_DEPTH} levels of nesting")


def parse(query: str) -> Node:
    """
    Parse C{query} into its tree.  Raises L{QueryError} (a C{ValueError})
    with the position and what was expected there.
    """
    if not isinstance(query, str):
        raise QueryError("", 0, "a query as text")
    if len(query) > MAX_QUERY:
        raise QueryError(query, MAX_QUERY, f"at most {MAX_QUERY} characters")
    if not query.strip():
        raise QueryError(query, len(query), 'a word, "phrase", #hashtag, @handle, field filter or (')
    return _Parser(query).parse()


# -- evaluation ---------------------------------------------------------------------


class Doc:
    """
    One post as queries see it: its tokens (made on first use) and fields.
    Term spans are cached, so a term shared by many topics is looked for
    once per post.
    """

    __slots__ = (
        "post",
        "normalized",
        "fuzzy",
        "_present",
        "_detectable",
        "_exact",
        "_words",
        "_sigils",
        "_index",
        "_cache",
    )

    def __init__(self, post, normalized=None, present=(), detectable=frozenset(), exact=frozenset()) -> None:
        self.post = post
        self.normalized = normalized
        #: Term keys the matcher's automaton can see (C{detectable}) and saw
        #: (C{present}): a detectable term not present is not in the post.
        self._present = present
        self._detectable = detectable
        #: Detectable terms whose presence alone answers L{has} (plain
        #: single words): no tokens needed.
        self._exact = exact
        #: Fuzzy term key -> the words of the post within one edit of it,
        #: when the matcher has already looked (for detectable terms).
        self.fuzzy: dict[tuple, set[str]] = {}
        self._words: Optional[list[str]] = None
        self._cache: dict = {}

    def _tokenize(self) -> None:
        if self.normalized is None:
            self.normalized = normalize(self.post.text or "")
        pairs = TOKEN.findall(self.normalized)
        self._words = [w for _, w in pairs]
        self._sigils = [s for s, _ in pairs]
        index: dict[str, list[int]] = {}
        for i, w in enumerate(self._words):
            index.setdefault(w, []).append(i)
        self._index = index

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._tokenize()
        return self._words  # type: ignore[return-value]

    def has(self, t: Term) -> bool:
        """
        Whether C{t} occurs in the post.
        """
        if t.key in self._exact:
            return t.key in self._present
        return bool(self.spans(t))

    def spans(self, t: Term) -> list[tuple[int, int]]:
        """
        Where C{t} occurs: (first token, last token) pairs, in order.
        """
        cached = self._cache.get(t.key)
        if cached is not None:
            return cached
        if t.key in self._detectable and t.key not in self._present:
            return []
        words = self.words
        sigils = self._sigils
        first, rest = t.elements[0], t.elements[1:]
        if t.fuzzy:
            if t.key in self._detectable:
                near = self.fuzzy.get(t.key, ())
                starts = sorted(i for w in near for i in self._index[w])
            else:
                starts = [i for i, w in enumerate(words) if len(w) >= FUZZY_MIN_TOKEN and within_one_edit(w, first)]
            starts = [i for i in starts if sigils[i] != "@" or words[i] == first]
        elif isinstance(first, str):
            starts = self._index.get(first, [])
        else:
            starts = [i for i, w in enumerate(words) if first.fullmatch(w)]
        if t.sigil:
            starts = [i for i in starts if sigils[i] == t.sigil]
        found = []
        n = len(words)
        for i in starts:
            end = i + len(rest)
            if end >= n:
                continue
            for k, e in enumerate(rest, i + 1):
                w = words[k]
                if not (w == e if isinstance(e, str) else e.fullmatch(w)):
                    break
            else:
                found.append((i, end))
        self._cache[t.key] = found
        return found


def _near(left: list, right: list, distance: int, ordered: bool) -> list[tuple[int, int]]:
    out = []
    for a0, a1 in left:
        for b0, b1 in right:
            if a1 < b0:
                gap = b0 - a1
            elif not ordered and b1 < a0:
                gap = a0 - b1
            else:
                continue
            if gap <= distance:
                out.append((min(a0, b0), max(a1, b1)))
    return out


def positions(node: Node, doc: Doc) -> list[tuple[int, int]]:
    """
    The token spans where a positional node (term, OR of them, NEAR) holds.
    """
    if isinstance(node, Term):
        return doc.spans(node)
    if isinstance(node, Or):
        out: list = []
        for c in node.children:
            out.extend(positions(c, doc))
        return out
    if isinstance(node, Near):
        left = positions(node.left, doc)
        if not left:
            return []
        return _near(left, positions(node.right, doc), node.distance, node.ordered)
    raise TypeError(node)


def _field_holds(f: Field, post) -> bool:
    name = f.name
    if name in NUMERIC_FIELDS:
        v = getattr(post, NUMERIC_FIELDS[name], None)
        if v is None:
            return False
        op, n = f.op, f.value
        return (
            v >= n if op == ">=" else v > n if op == ">" else v <= n if op == "<=" else v < n if op == "<" else v == n
        )
    if name == "author":
        author = normalize((post.author or "").lstrip("@"))
        return bool(f.value.fullmatch(author)) if f.op == "~" else author == f.value
    if name == "source":
        return post.source == f.value
    if name == "lang":
        tag = language_key(post.lang or "")
        if tag in ("", "und"):
            return f.value == "und"
        return tag == f.value or tag.split("-", 1)[0] == f.value
    if name == "verified":
        return bool(post.author_verified) == f.value
    if name == "has":
        if f.value == "geo":
            return post.lat is not None and post.lon is not None
        extra = getattr(post, "extra", None) or {}
        return bool(extra.get("links")) or bool(_LINK.search(post.text or ""))
    raise AssertionError(name)


def evaluate(node: Node, doc: Doc) -> bool:
    """
    Whether the post in C{doc} satisfies C{node}.
    """
    if isinstance(node, Term):
        return doc.has(node)
    if isinstance(node, And):
        return all(evaluate(c, doc) for c in node.children)
    if isinstance(node, Or):
        return any(evaluate(c, doc) for c in node.children)
    if isinstance(node, Not):
        return not evaluate(node.child, doc)
    if isinstance(node, Near):
        return bool(positions(node, doc))
    if isinstance(node, Field):
        return _field_holds(node, doc.post)
    raise TypeError(node)


def terms(node: Node) -> Iterable[Term]:
    """
    Every term in the tree.
    """
    if isinstance(node, Term):
        yield node
    elif isinstance(node, (And, Or)):
        for c in node.children:
            yield from terms(c)
    elif isinstance(node, Not):
        yield from terms(node.child)
    elif isinstance(node, Near):
        yield from terms(node.left)
        yield from terms(node.right)


def triggers(node: Node) -> Optional[list[Term]]:
    """
    Terms one of which a post must contain to satisfy C{node}, or C{None} if
    it can match a post with none of its terms (C{NOT x}, a field filter).
    The matcher evaluates a tree only on posts holding one of its triggers.
    """
    if isinstance(node, Term):
        return [node]
    if isinstance(node, Near):
        return triggers(node.left)
    if isinstance(node, Or):
        out: list[Term] = []
        for c in node.children:
            t = triggers(c)
            if t is None:
                return None
            out.extend(t)
        return out
    if isinstance(node, And):
        options = [t for t in (triggers(c) for c in node.children) if t is not None]
        return min(options, key=len) if options else None
    return None


def highlights(node: Node, doc: Doc) -> set[int]:
    """
    The tokens that make C{node} true, for showing why a post matched
    (terms under a C{NOT} are never highlighted).
    """
    out: set[int] = set()

    def walk(n: Node) -> None:
        if isinstance(n, (Term, Near)):
            for a, b in positions(n, doc):
                out.update(range(a, b + 1))
        elif isinstance(n, (And, Or)):
            for c in n.children:
                walk(c)

    walk(node)
    return out


def to_text(node: Node) -> str:
    """
    The query written back, fully parenthesised: C{parse(to_text(t))} is
    equivalent to C{t}.
    """
    if isinstance(node, Term):
        words = [e if isinstance(e, str) else _unpattern(e) for e in node.elements]
        body = node.sigil + " ".join(words)
        return f'"{body}"' if len(words) > 1 else body + ("~1" if node.fuzzy else "")
    if isinstance(node, Field):
        return node.text
    if isinstance(node, Not):
        return f"NOT {to_text(node.child)}"
    if isinstance(node, And):
        return "(" + " AND ".join(to_text(c) for c in node.children) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(to_text(c) for c in node.children) + ")"
    if isinstance(node, Near):
        op = "ONEAR" if node.ordered else "NEAR"
        return f"({to_text(node.left)} {op}/{node.distance} {to_text(node.right)})"
    raise TypeError(node)


def _unpattern(pattern: re.Pattern) -> str:
    return pattern.pattern.replace(r"\w*", "*").replace(r"\w", "?").replace("\\", "")


def matches(node: Node, post) -> bool:
    """
    Whether one post (anything with a L{monitor.model.Post}'s attributes)
    satisfies C{node}, without a matcher: for searching stored posts.
    """
    return evaluate(node, Doc(post))


class StoredPost:
    """
    The fields of a stored post that queries look at, from a search row,
    so a store can evaluate a query without building whole posts.
    """

    __slots__ = (
        "text",
        "author",
        "lang",
        "source",
        "likes",
        "reposts",
        "replies",
        "author_followers",
        "author_verified",
        "lat",
        "lon",
        "extra",
    )

    def __init__(self, text, author, lang, source, likes, reposts, replies, followers, verified, lat, lon) -> None:
        self.text, self.author, self.lang, self.source = text, author, lang, source
        self.likes, self.reposts, self.replies = likes, reposts, replies
        self.author_followers, self.author_verified = followers, bool(verified)
        self.lat, self.lon, self.extra = lat, lon, None


def reasons(node: Node, doc: Doc) -> list[str]:
    """
    The clauses that made C{node} true, as written: the terms found, the
    C{NEAR}s that hold and the field filters that pass (nothing under a
    C{NOT}, nothing from an C{OR} branch that failed), for saying why a
    post matched.
    """
    out: list[str] = []

    def walk(n: Node) -> None:
        if isinstance(n, Term):
            if doc.has(n):
                out.append(n.text + ("~1" if n.fuzzy else ""))
        elif isinstance(n, Near):
            if positions(n, doc):
                out.append(to_text(n).strip("()"))
        elif isinstance(n, Field):
            if _field_holds(n, doc.post):
                out.append(n.text)
        elif isinstance(n, (And, Or)):
            for c in n.children:
                if isinstance(n, And) or evaluate(c, doc):
                    walk(c)

    walk(node)
    return list(dict.fromkeys(out))
