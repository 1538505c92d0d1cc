"""
VADER sentiment scores, exactly as C{vaderSentiment} 3.3.2 computes them,
only faster.

L{FastVader.polarity_scores} returns the same dict as
C{SentimentIntensityAnalyzer.polarity_scores}, with the same four floats bit
for bit, for every string.  It uses the analyzer's own lexicon dicts and
constants, so a lexicon file edited in place changes both alike.  It is
faster because it does less, not because it does something else:

  - emoji become their descriptions in one C{str.translate} (3.3.2 builds
    the text one character at a time, which is quadratic in the number of
    emoji: 2,000 emoji cost 0.6 s).  Where 3.3.2 leaves out a space this
    adds one, which C{str.split} cannot tell apart;
  - every token is lowercased and looked up once, and the rules run only
    around the tokens found in the lexicon, reading one shared list of
    lowercased tokens instead of rebuilding it for every check;
  - whether the post mixes ALL-CAPS and other words is worked out only when
    an ALL-CAPS word could be boosted by it;
  - the "but" rule reproduces 3.3.2's C{list.index} lookups (which find the
    first I{equal} score, not the score's own position) with a heap per
    value, in M{O(n log n)} instead of M{O(n^2)};
  - texts seen again (reposts, retweets) come from a bounded LRU cache.

The quirks of 3.3.2 are kept on purpose, because the point is equality:
the phrase idioms are checked only for a word with three words before it
whose first is not in the lexicon, the single-word idiom C{"badass"} and
the sentiment-laden idioms are never used, a capitalised word with no
valence is pushed down, not up, and "but" scales the first equal score.
"""

from __future__ import annotations

import math
import string
from functools import lru_cache
from heapq import heappop, heappush
from itertools import compress
from typing import Optional

from twisted.logger import Logger
from vaderSentiment import vaderSentiment as _vs

__all__ = [
    "CACHE_SIZE",
    "FastVader",
    "MAX_CACHED_CHARS",
    "SELF_CHECK_TEXTS",
    "checked_scorer",
    "mismatches",
    "same_scores",
]

_log = Logger()

#: How many distinct texts the LRU cache keeps.
CACHE_SIZE = 4096

#: Texts longer than this are scored every time: the cache holds at most
#: C{CACHE_SIZE * MAX_CACHED_CHARS} characters.
MAX_CACHED_CHARS = 1000

_PUNCTUATION = string.punctuation
_B_INCR = _vs.B_INCR
_C_INCR = _vs.C_INCR
_N_SCALAR = _vs.N_SCALAR
_NEGATE = frozenset(_vs.NEGATE)
_SO_THIS = ("so", "this")
_sqrt = math.sqrt
_fabs = math.fabs


def _word_tuples(phrases: dict, words: int) -> dict:
    # Only phrases of exactly this many words can equal a "{0} {1}"-style
    # join of tokens, which never contain whitespace.
    return {
        tuple(key.split(" ")): value
        for key, value in phrases.items()
        if len(key.split(" ")) == words and all(key.split(" "))
    }


def _punctuation_table() -> dict:
    # _punctuation_emphasis for every (clipped "!" count, "?" count) pair,
    # computed with 3.3.2's own functions so the floats are its floats.
    return {
        (ep, qm): _vs.SentimentIntensityAnalyzer._amplify_ep("!" * ep)
        + _vs.SentimentIntensityAnalyzer._amplify_qm("?" * qm)
        for ep in range(5)
        for qm in range(5)
    }


class FastVader:
    """
    A drop-in for C{SentimentIntensityAnalyzer.polarity_scores}.

    @param analyzer: the C{SentimentIntensityAnalyzer} whose lexicons to
        use (and to fall back on for input that is not a C{str}); by
        default a new one.
    @param cache_size: entries of the LRU cache of whole texts; 0 turns it
        off.
    """

    def __init__(self, analyzer=None, cache_size: int = CACHE_SIZE):
        if analyzer is None:
            analyzer = _vs.SentimentIntensityAnalyzer()
        self.analyzer = analyzer
        self.lexicon = lexicon = analyzer.lexicon
        booster = _vs.BOOSTER_DICT
        self._booster = booster
        # Words scored by their own valence: in the lexicon and not a
        # booster (3.3.2 tests the booster list first).
        self._scored = {w: v for w, v in lexicon.items() if w not in booster}
        self._special2 = _word_tuples(_vs.SPECIAL_CASES, 2)
        self._special3 = _word_tuples(_vs.SPECIAL_CASES, 3)
        self._booster2 = _word_tuples(booster, 2)
        self._booster3 = _word_tuples(booster, 3)
        firsts = set()
        for table in (self._special2, self._special3, self._booster2, self._booster3):
            firsts.update(key[0] for key in table)
        self._idiom_firsts = frozenset(firsts)
        self._least_in_lexicon = "least" in lexicon
        # Only single characters are ever replaced: 3.3.2 looks up one
        # character at a time, so multi-character keys never match.
        emoji = {ord(k): " " + v for k, v in analyzer.emojis.items() if len(k) == 1}
        self._emoji = emoji
        self._emoji_ascii = any(c < 128 for c in emoji)
        self._punctuation = _punctuation_table()
        self._lowered = _Lowered()
        if cache_size > 0:
            self._cached = lru_cache(maxsize=cache_size)(self._scores)
        else:
            self._cached = self._scores

    def polarity_scores(self, text) -> dict:
        """
        C{{"neg", "neu", "pos", "compound"}}, exactly as vaderSentiment
        3.3.2 would return them for C{text}.
        """
        if type(text) is not str:
            # 3.3.2's behaviour for bytes, numbers and str subclasses is
            # its own business; delegate rather than imitate.
            return self.analyzer.polarity_scores(text)
        if len(text) <= MAX_CACHED_CHARS:
            neg, neu, pos, compound = self._cached(text)
        else:
            neg, neu, pos, compound = self._scores(text)
        return {"neg": neg, "neu": neu, "pos": pos, "compound": compound}

    def _scores(self, text: str) -> tuple:
        if self._emoji_ascii or not text.isascii():
            text = text.translate(self._emoji)
        raw = text.split()
        n = len(raw)
        if not n:
            return (0.0, 0.0, 0.0, 0.0)

        # SentiText._strip_punc_if_word and one lowercase per token, from
        # a table of the tokens seen before.
        lower = list(map(self._lowered.__getitem__, raw))
        hits = list(compress(range(n), map(self._scored.__contains__, lower)))
        if not hits:
            # Every score is 0: the answer does not depend on the text.
            return (0.0, 1.0, 0.0, 0.0)

        sentiments = [0] * n
        cap_diff = None
        for i in hits:
            w = lower[i]
            if w == "kind" and i < n - 1 and lower[i + 1] == "of":
                continue
            valence, cap_diff = self._valence(i, w, raw, lower, n, cap_diff)
            sentiments[i] = valence

        if "but" in lower:
            _but_check(sentiments, lower.index("but"))

        return self._score_valence(sentiments, hits, text)

    def _valence(self, i, w, tokens, lower, n, cap_diff):
        # SentimentIntensityAnalyzer.sentiment_valence for a lexicon word.
        lexicon = self.lexicon
        value = lexicon[w]
        valence = value
        if w == "no" and i != n - 1 and lower[i + 1] in lexicon:
            valence = 0.0
        if (
            (i > 0 and lower[i - 1] == "no")
            or (i > 1 and lower[i - 2] == "no")
            or (i > 2 and lower[i - 3] == "no" and lower[i - 1] in ("or", "nor"))
        ):
            valence = value * _N_SCALAR
        if tokens[i].isupper():
            if cap_diff is None:
                cap_diff = _cap_differential(tokens)
            if cap_diff:
                if valence > 0:
                    valence += _C_INCR
                else:
                    valence -= _C_INCR

        booster = self._booster
        if i > 0:
            w1 = lower[i - 1]
            if w1 not in lexicon:
                if w1 in booster:
                    valence, cap_diff = self._boost(tokens, i - 1, w1, valence, cap_diff, None)
                else:
                    valence = valence + 0.0  # as 3.3.2 adds 0.0: turns -0.0 into 0.0
                if w1 in _NEGATE or "n't" in w1:
                    valence = valence * _N_SCALAR
        if i > 1:
            w2 = lower[i - 2]
            if w2 not in lexicon:
                if w2 in booster:
                    valence, cap_diff = self._boost(tokens, i - 2, w2, valence, cap_diff, 0.95)
                else:
                    valence = valence + 0.0
                w1 = lower[i - 1]
                if w2 == "never" and (w1 == "so" or w1 == "this"):
                    valence = valence * 1.25
                elif w2 == "without" and w1 == "doubt":
                    pass
                elif w2 in _NEGATE or "n't" in w2:
                    valence = valence * _N_SCALAR
        if i > 2:
            w3 = lower[i - 3]
            if w3 not in lexicon:
                if w3 in booster:
                    valence, cap_diff = self._boost(tokens, i - 3, w3, valence, cap_diff, 0.9)
                else:
                    valence = valence + 0.0
                w2 = lower[i - 2]
                w1 = lower[i - 1]
                if (w3 == "never" and (w2 == "so" or w2 == "this")) or (w1 == "so" or w1 == "this"):
                    valence = valence * 1.25
                elif w3 == "without" and (w2 == "doubt" or w1 == "doubt"):
                    pass
                elif w3 in _NEGATE or "n't" in w3:
                    valence = valence * _N_SCALAR
                firsts = self._idiom_firsts
                if w3 in firsts or w2 in firsts or w1 in firsts or w in firsts:
                    valence = self._idioms(valence, lower, i, n)

        # _least_check
        if i > 0 and lower[i - 1] == "least" and not self._least_in_lexicon:
            if i > 1:
                if lower[i - 2] != "at" and lower[i - 2] != "very":
                    valence = valence * _N_SCALAR
            else:
                valence = valence * _N_SCALAR
        return valence, cap_diff

    def _boost(self, tokens, k, w, valence, cap_diff, damping):
        # valence plus scalar_inc_dec for the booster word at k, damped
        # by its distance as 3.3.2 does (0.95 two words away, 0.9 three).
        scalar = self._booster[w]
        if valence < 0:
            scalar *= -1
        if tokens[k].isupper():
            if cap_diff is None:
                cap_diff = _cap_differential(tokens)
            if cap_diff:
                if valence > 0:
                    scalar += _C_INCR
                else:
                    scalar -= _C_INCR
        if damping is not None and scalar != 0:
            scalar = scalar * damping
        return valence + scalar, cap_diff

    def _idioms(self, valence, lower, i, n):
        # _special_idioms_check; reached only with i > 2.
        w3, w2, w1, w0 = lower[i - 3], lower[i - 2], lower[i - 1], lower[i]
        special2 = self._special2
        special3 = self._special3
        for seq, table in (
            ((w1, w0), special2),
            ((w2, w1, w0), special3),
            ((w2, w1), special2),
            ((w3, w2, w1), special3),
            ((w3, w2), special2),
        ):
            if seq in table:
                valence = table[seq]
                break
        if n - 1 > i:
            seq = (w0, lower[i + 1])
            if seq in special2:
                valence = special2[seq]
        if n - 1 > i + 1:
            seq = (w0, lower[i + 1], lower[i + 2])
            if seq in special3:
                valence = special3[seq]
        for seq, table in (
            ((w3, w2, w1), self._booster3),
            ((w3, w2), self._booster2),
            ((w2, w1), self._booster2),
        ):
            if seq in table:
                valence = valence + table[seq]
        return valence

    def _score_valence(self, sentiments, hits, text):
        # SentimentIntensityAnalyzer.score_valence.
        sum_s = float(sum(sentiments))
        ep = text.count("!")
        qm = text.count("?")
        punct = self._punctuation[(ep if ep < 4 else 4, qm if qm < 4 else 4)]
        if sum_s > 0:
            sum_s += punct
        elif sum_s < 0:
            sum_s -= punct
        # normalize(sum_s), inlined: the same operations in the same order.
        compound = sum_s / _sqrt((sum_s * sum_s) + 15)
        if compound < -1.0:
            compound = -1.0
        elif compound > 1.0:
            compound = 1.0

        # _sift_sentiment_scores: scores off the lexicon are 0 and stay 0.
        pos_sum = 0.0
        neg_sum = 0.0
        nonzero = 0
        for i in hits:
            score = sentiments[i]
            if score > 0:
                pos_sum += float(score) + 1
                nonzero += 1
            elif score < 0:
                neg_sum += float(score) - 1
                nonzero += 1
        neu_count = len(sentiments) - nonzero

        if pos_sum > _fabs(neg_sum):
            pos_sum += punct
        elif pos_sum < _fabs(neg_sum):
            neg_sum -= punct
        total = pos_sum + _fabs(neg_sum) + neu_count
        return (
            round(_fabs(neg_sum / total), 3),
            round(_fabs(neu_count / total), 3),
            round(_fabs(pos_sum / total), 3),
            round(compound, 4),
        )


#: Distinct tokens L{_Lowered} remembers; past that it is emptied.  Only
#: tokens of at most L{MAX_TOKEN_CHARS} are kept (links and other long
#: tokens are seldom seen twice), so it holds a few MiB at most.
MAX_TOKENS = 50_000
MAX_TOKEN_CHARS = 40


class _Lowered(dict):
    """
    Raw token (as C{str.split} cuts it) -> the lowercase of the word
    3.3.2 makes of it (C{SentiText._strip_punc_if_word}), filled on demand.

    The case tests (C{isupper}) can use the raw token: stripping removes
    only ASCII punctuation, which has no case.
    """

    def __missing__(self, token: str) -> str:
        stripped = token.strip(_PUNCTUATION)
        word = (token if len(stripped) <= 2 else stripped).lower()
        if len(token) <= MAX_TOKEN_CHARS:
            if len(self) >= MAX_TOKENS:
                self.clear()
            self[token] = word
        return word


def _cap_differential(tokens) -> bool:
    # allcap_differential: some but not all tokens are ALL CAPS.
    upper = 0
    for token in tokens:
        if token.isupper():
            upper += 1
    return 0 < len(tokens) - upper < len(tokens)


def _but_check(sentiments: list, but: int) -> None:
    """
    3.3.2's C{_but_check}, in place: for each position k in turn, the first
    position j holding a score I{equal} to the one at k is scaled (by 0.5
    before "but", 1.5 after it).  One heap of positions per value finds j
    without scanning the list.
    """
    heaps: dict = {}
    for index, value in enumerate(sentiments):
        heap = heaps.get(value)
        if heap is None:
            heaps[value] = [index]
        else:
            heap.append(index)  # ascending: already a heap
    for k in range(len(sentiments)):
        value = sentiments[k]
        heap = heaps[value]
        while sentiments[heap[0]] != value:
            heappop(heap)  # left this value since it was pushed
        j = heap[0]
        if j < but:
            new = value * 0.5
        elif j > but:
            new = value * 1.5
        else:
            continue
        sentiments[j] = new
        if new != value:
            heappop(heap)
            other = heaps.get(new)
            if other is None:
                heaps[new] = [j]
            else:
                heappush(other, j)


#: What the start-up check scores both ways: a text for each rule of
#: vaderSentiment 3.3.2 (and its quirks), so a scorer that gets one wrong
#: is caught before it scores a post.
SELF_CHECK_TEXTS = (
    "",
    "   \t\n ",
    "VADER is smart, handsome, and funny.",
    "VADER is smart, handsome, and funny!",
    "VADER is very smart, handsome, and funny.",
    "VADER is VERY SMART, handsome, and FUNNY.",
    "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!",
    "VADER is not smart, handsome, nor funny.",
    "At least it isn't a horrible book.",
    "The book was only kind of good.",
    "The plot was good, but the characters are uncompelling and the dialog is not great.",
    "Today SUX!",
    "Today only kinda sux! But I'll get by, lol",
    "Make sure you :) or :D today!",
    "Catch utf-8 emoji such as 💘 and 💋 and 😁",
    "Not bad at all",
    "Sentiment analysis has never been good.",
    "Sentiment analysis has never been this good!",
    "Most automated sentiment analysis tools are shit.",
    "With VADER, sentiment analysis is the shit!",
    "On the other hand, VADER is quite bad ass",
    "VADER is such a badass!",
    "Without a doubt, excellent idea.",
    "Roger Dodger is at least compelling as a variation on the theme.",
    "Roger Dodger is one of the least compelling variations on this theme.",
    "least good, very least good",
    "no no good, no bad or nor worse",
    "GOOD BAD UGLY",
    "good bad BAD kind of GREAT sort of ok",
    "that was the bomb yeah right kiss of death to die for bus stop",
    "😀😀😀 ✅ 😡😡 great 😢 but 😍!!",
    "good good good but bad bad good good",
    "what?? really??? no way!!!! ?!?!",
    "Η ΟΔΟΣ είναι ωραία, İstanbul çok güzel, 東京 最高 good",
)


def mismatches(candidate, reference, texts=SELF_CHECK_TEXTS) -> list:
    """
    The texts on which C{candidate.polarity_scores} differs from
    C{reference.polarity_scores}, in value or in the bits of a float, with
    both answers.
    """
    wrong = []
    for text in texts:
        expected = reference.polarity_scores(text)
        got = candidate.polarity_scores(text)
        if not same_scores(expected, got):
            wrong.append((text, expected, got))
    return wrong


def same_scores(expected: dict, got: dict) -> bool:
    """
    The same keys in the same order with the same floats, bit for bit
    (C{-0.0} is not C{0.0} here, though C{==} says it is).
    """
    if list(expected) != list(got):
        return False
    for key, value in expected.items():
        other = got[key]
        if type(other) is not type(value) or repr(other) != repr(value):
            return False
    return True


def checked_scorer(reference=None, candidate=None, log: Optional[Logger] = None):
    """
    The scorer to use: L{FastVader} if it agrees with vaderSentiment on
    L{SELF_CHECK_TEXTS}, else vaderSentiment itself, with an error logged.

    Falling back rather than refusing to start keeps the monitor running
    with exactly the scores it promises, only slower; the error says so.

    @param reference: the C{SentimentIntensityAnalyzer}; by default a new one.
    @param candidate: the fast scorer to check; by default a L{FastVader}
        over C{reference}'s lexicons.
    """
    log = log or _log
    if reference is None:
        reference = _vs.SentimentIntensityAnalyzer()
    try:
        if candidate is None:
            candidate = FastVader(reference)
        wrong = mismatches(candidate, reference)
    except Exception:
        log.failure("the fast VADER scorer failed its start-up check; scoring with vaderSentiment")
        return reference
    if wrong:
        text, expected, got = wrong[0]
        log.error(
            "the fast VADER scorer differs from vaderSentiment on {count} of {total}"
            " check texts (first {text!r}: {got} instead of {expected});"
            " scoring with vaderSentiment",
            count=len(wrong),
            total=len(SELF_CHECK_TEXTS),
            text=text,
            got=got,
            expected=expected,
        )
        return reference
    return candidate
