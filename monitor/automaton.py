"""
One Aho-Corasick automaton: every occurrence of many strings in one read of
a text.  The topic matcher and the label rules each build one.

It is C{pyahocorasick}'s (a C extension, declared in setup.cfg, with wheels
for the Pythons we support); if that cannot be imported, L{PurePython}, the
same algorithm in Python, stands in with the same answers, only slower.
Only the part of C{pyahocorasick.Automaton}'s interface the hub uses is
here: C{add_word}, C{get}, C{make_automaton}, C{iter}.
"""

from __future__ import annotations

from typing import Any, Iterator

__all__ = ["Automaton", "PurePython", "NATIVE"]


class PurePython:
    """
    Aho-Corasick in Python: C{iter(text)} yields C{(end, value)} for every
    occurrence of every added string, C{end} the index of its last
    character, in order of C{end} (the order of several ending at the same
    place is not part of the contract).
    """

    def __init__(self) -> None:
        self._goto: list[dict[str, int]] = [{}]
        self._values: dict[str, Any] = {}
        self._out: list[tuple] = []

    def add_word(self, key: str, value: Any) -> bool:
        """Add C{key} (or replace its value); True if it is new."""
        new = key not in self._values
        self._values[key] = value
        return new

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def make_automaton(self) -> None:
        """Build the trie and its failure links from the added strings."""
        goto: list[dict[str, int]] = [{}]
        ends: list[list[str]] = [[]]
        for key in self._values:
            state = 0
            for c in key:
                nxt = goto[state].get(c)
                if nxt is None:
                    nxt = len(goto)
                    goto[state][c] = nxt
                    goto.append({})
                    ends.append([])
                state = nxt
            ends[state].append(key)
        fail = [0] * len(goto)
        # Breadth first, so a state's failure is ready before its children.
        queue = list(goto[0].values())
        for state in queue:
            for c, nxt in goto[state].items():
                f = fail[state]
                while f and c not in goto[f]:
                    f = fail[f]
                fail[nxt] = goto[f].get(c, 0) if goto[f].get(c, 0) != nxt else 0
                queue.append(nxt)
        out: list[tuple] = [()] * len(goto)
        for state in [0, *queue]:
            own = sorted(ends[state], key=len, reverse=True)
            out[state] = tuple((key, self._values[key]) for key in own) + (out[fail[state]] if state else ())
        self._goto, self._fail, self._out = goto, fail, out

    def iter(self, text: str) -> Iterator[tuple[int, Any]]:
        goto, fail, out = self._goto, self._fail, self._out
        state = 0
        for i, c in enumerate(text):
            while state and c not in goto[state]:
                state = fail[state]
            state = goto[state].get(c, 0)
            for _, value in out[state]:
                yield i, value


try:
    import ahocorasick
except ImportError:  # pragma: no cover - the wheel is a dependency
    Automaton: Any = PurePython
    NATIVE = False
else:
    Automaton = ahocorasick.Automaton
    NATIVE = True
