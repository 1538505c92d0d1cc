"""
The words of a post that the statistics count: its hashtags and its terms.
Shared by every store provider, so that the rollups they keep (and the
answers they give) agree.
"""

from __future__ import annotations

import re

__all__ = ["hashtags", "terms"]

# Not preceded by a word character, '&' (HTML entity) or '/' (URL fragment),
# and not all digits ("we're #1").
_HASHTAG = re.compile(r"(?<![\w&/])#(\w*[^\W\d]\w*)")
_URL = re.compile(r"(?:\b[a-z][a-z0-9+.-]*://|\bwww\.)\S+", re.IGNORECASE)
_HANDLE_OR_TAG = re.compile(r"[@#]\w+(?:[.@-]\w+)*")
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")

_STOPWORDS = frozenset(
    """
    a about above across after afterwards again against all almost alone
    along already also although always am among amongst an and another any
    anybody anyhow anyone anything anyway anywhere are aren't around as at
    back be became because become becomes been before beforehand behind being
    below beside besides between beyond both but by can can't cannot could
    couldn't did didn't do does doesn't doing don't done down during each
    either else elsewhere enough etc even ever every everybody everyone
    everything everywhere except few for from further get gets getting got
    gotten had hadn't has hasn't have haven't having he he'd he'll he's hence
    her here here's hers herself him himself his how how's however i i'd i'll
    i'm i've if in inside instead into is isn't it it's its itself just let
    let's like made make makes many may maybe me might mine more most mostly
    much must mustn't my myself near need needs neither never nevertheless
    next no nobody none nor not nothing now nowhere of off often oh ok okay
    on once one ones only onto or other others otherwise ought our ours
    ourselves out over own per perhaps please put quite rather really same
    say says said see seem seemed seems shall shan't she she'd she'll she's
    should shouldn't since so some somebody somehow someone something
    sometime sometimes somewhere still such than that that's the their theirs
    them themselves then there there's thereby therefore these they they'd
    they'll they're they've thing things this those though through
    throughout thru thus till to together too toward towards under until up
    upon us very via was wasn't way we we'd we'll we're we've well were
    weren't what what's whatever when when's whenever where where's whereas
    wherever whether which while who who's whoever whole whom whose why why's
    will with within without won't would wouldn't yeah yes yet you you'd
    you'll you're you've your yours yourself yourselves
    amp rt http https www com lol omg gonna wanna gotta
    los las del una por para con que como pero más mas sus esta este esto
    muy sin sobre también tambien fue ser son hay porque cuando todo
    les des une pour avec dans sur pas qui que est sont mais ont aux plus
    par cette ces ses leur nous vous elle ils été etre être
    der die das und ist nicht mit den dem ein eine einer für auf sich
    auch als von sie wir ihr aber oder wie noch nur bei aus zum zur
    não nao uma com para por mais mas como você voce isso este esta
    che non per una con del della sono come anche più piu
    """.split()
)


def hashtags(text: str) -> set[str]:
    """
    The hashtags of a text, lower-case and without C{#}; a C{#} inside a
    URL is not one.
    """
    return {tag.lower() for tag in _HASHTAG.findall(_URL.sub(" ", text or ""))}


def terms(text: str) -> set[str]:
    """
    The distinct words of 3+ letters in a text that say something: not
    stopwords, and not part of a URL, @handle or #hashtag.
    """
    text = _HANDLE_OR_TAG.sub(" ", _URL.sub(" ", text or "")).lower()
    found = set()
    for word in _WORD.findall(text):
        word = word.replace("’", "'")
        if word.endswith("'s"):
            word = word[:-2]
        if len(word) >= 3 and word not in _STOPWORDS:
            found.add(word)
    return found
