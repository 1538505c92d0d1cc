"""
Tests for L{monitor.match}: the topic matching rules, one by one, then
properties over generated text and a run at a realistic scale.
"""

import random
import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from monitor.match import Matcher, normalize, tokenize
from monitor.words import within_one_edit as _within_one_edit
from monitor.model import Post, Topic


def post(text, lang=None, source="demo"):
    return Post(
        source=source,
        network="demo",
        native_id="1",
        text=text,
        author="someone",
        created_at=0.0,
        lang=lang,
    )


def matches(topic, text, lang=None, source="demo"):
    """
    Whether the single C{topic} matches a post with C{text}.
    """
    return Matcher([topic]).match(post(text, lang, source)) == (topic.name,)


ACME = Topic("acme", terms=("acme",))


# normalize and tokenize


def test_normalize_folds_case_and_accents():
    """Case, accents and compatibility forms fold to one plain spelling."""
    assert normalize("Café") == "cafe"
    assert normalize("ACME") == "acme"
    assert normalize("ＡＣＭＥ") == "acme"
    assert normalize("Straße") == "strasse"
    assert normalize("İstanbul") == "istanbul"


def test_normalize_drops_soft_hyphen():
    """Invisible format characters cannot split or disguise a word."""
    assert normalize("ac\u00adme") == "acme"


def test_tokenize_marks_hashtags_and_handles():
    """Tokens keep #/@ only where they start a hashtag or handle."""
    assert tokenize("#Acme down? ask @AcmeSupport or info@acme.com") == [
        "#acme",
        "down",
        "ask",
        "@acmesupport",
        "or",
        "info",
        "acme",
        "com",
    ]


def test_tokenize_apostrophes_separate_underscores_join():
    """Apostrophes (any form) split tokens; underscores join them."""
    assert tokenize("Acme's acme\u2019s acme\u02bcs acme_cloud") == [
        "acme",
        "s",
        "acme",
        "s",
        "acme",
        "s",
        "acme_cloud",
    ]


# words


@pytest.mark.parametrize(
    "text",
    [
        "acme",
        "Acme's new thing",
        "ACME!",
        "I like acme.",
        "(acme)",
        "acme-cloud",
    ],
)
def test_word_matches_whole_word(text):
    """A word term matches the word wherever it stands alone."""
    assert matches(ACME, text)


@pytest.mark.parametrize("text", ["acmeville", "superacme", "acme_cloud", "acme2", "acm e"])
def test_word_does_not_match_inside_other_words(text):
    """A word term does not match as part of a longer token."""
    assert not matches(ACME, text)


def test_word_is_case_and_accent_insensitive():
    """Accents and case differ freely between term and text."""
    cafe = Topic("cafe", terms=("Café",))
    assert matches(cafe, "best CAFE in town")
    assert matches(cafe, "best café in town")
    assert matches(cafe, "best CAFÉ in town")
    assert not matches(cafe, "cafeteria")
    assert matches(Topic("t", terms=("cafe",)), "Café Noir")


def test_word_matches_hashtag_and_handle():
    """A word term also matches the same word as a hashtag or handle."""
    assert matches(ACME, "love #acme")
    assert matches(ACME, "thanks @acme")
    assert matches(ACME, "#ACME rocks")
    assert not matches(ACME, "#acmeville")
    assert not matches(ACME, "@acmesupport")


def test_word_matches_in_urls_and_emails():
    """URLs and e-mail addresses are text too: their words match."""
    assert matches(ACME, "see https://acme.com/status")
    assert matches(ACME, "write to info@acme.com")


# hashtags


def test_hashtag_term_matches_only_hashtag():
    """A #term matches the hashtag in any case, and not the bare word."""
    topic = Topic("tag", terms=("#acme",))
    assert matches(topic, "so good #acme")
    assert matches(topic, "#ACME")
    assert matches(topic, "#Acme's best")
    assert not matches(topic, "acme")
    assert not matches(topic, "@acme")
    assert not matches(topic, "#acmeville")
    assert not matches(topic, "c#acme")


# handles


@pytest.mark.parametrize(
    "text",
    [
        "hey @acmesupport help",
        "@AcmeSupport",
        "cc @acmesupport@mastodon.social please",
        "ping @acmesupport.bsky.social",
        "@acmesupport's reply",
    ],
)
def test_handle_term_matches_handle(text):
    """A @term matches the handle, also with a server domain after it."""
    assert matches(Topic("h", terms=("@acmesupport",)), text)


@pytest.mark.parametrize(
    "text",
    [
        "acmesupport",
        "#acmesupport",
        "@acmesupport2",
        "@acmesupport_eu",
        "mail bob@acmesupport.com",
        "@someone@acmesupport.social",
    ],
)
def test_handle_term_rejects_other_tokens(text):
    """A @term rejects bare words, hashtags, longer handles and e-mails."""
    assert not matches(Topic("h", terms=("@acmesupport",)), text)


def test_handle_term_with_domain():
    """A handle term with a domain needs that domain."""
    topic = Topic("h", terms=("@acme@mastodon.social",))
    assert matches(topic, "follow @acme@mastodon.social")
    assert not matches(topic, "follow @acme@mstdn.social")
    assert not matches(topic, "follow @acme")


# phrases


@pytest.mark.parametrize("term", ['"acme cloud"', "acme cloud", "\u201cAcme Cloud\u201d"])
@pytest.mark.parametrize(
    "text",
    [
        "acme cloud is down",
        "is Acme  Cloud down",
        "acme-cloud outage",
        "ACME. Cloud!",
        "#acme #cloud",
        "new\nacme\ncloud",
    ],
)
def test_phrase_matches_consecutive_tokens(term, text):
    """A phrase, quoted or not, matches its words when they are adjacent."""
    assert matches(Topic("p", terms=(term,)), text)


@pytest.mark.parametrize(
    "text",
    [
        "acme",
        "cloud",
        "cloud acme",
        "acme the cloud",
        "acme cloudy",
        "acmecloud",
    ],
)
def test_phrase_rejects_partial_or_separated_words(text):
    """A phrase does not match when a word is missing, moved or apart."""
    assert not matches(Topic("p", terms=('"acme cloud"',)), text)


def test_phrase_at_end_of_text():
    """A phrase whose first word ends the text does not look past it."""
    assert not matches(Topic("p", terms=("acme cloud",)), "I use acme")


def test_phrase_starting_with_hashtag():
    """Only the leading #/@ of a term is a constraint."""
    topic = Topic("p", terms=("#acme cloud",))
    assert matches(topic, "#acme cloud rocks")
    assert not matches(topic, "acme cloud rocks")


# variants


def test_variants_match_like_terms():
    """Variants match exactly, with the same word and case rules."""
    topic = Topic("acme", terms=("acme",), variants=("akme", "ackme corp"))
    assert matches(topic, "AKME is great")
    assert matches(topic, "#akme")
    assert matches(topic, "Ackme  Corp.")
    assert not matches(topic, "akmeville")
    assert not matches(topic, "ackme")


def test_variants_alone_make_a_topic():
    """A topic with only variants still matches them."""
    assert matches(Topic("v", variants=("akme",)), "akme!")


def test_variants_are_not_fuzzy():
    """Fuzzy matching applies to terms, not to variants."""
    topic = Topic("v", terms=("globex",), variants=("globx_co",), fuzzy=True)
    assert not matches(topic, "globx_con")


# fuzzy

GLOBEX = Topic("globex", terms=("globex",), fuzzy=True)


@pytest.mark.parametrize(
    "text",
    [
        "globbex",  # insertion
        "glbex",  # deletion
        "glovex",  # substitution
        "golbex",  # adjacent transposition
        "globxe",  # transposition at the end
        "xlobex",  # substitution at the start
        "Glöbbex!",  # accents and case fold first
        "#globbex",  # hashtags are words too
    ],
)
def test_fuzzy_matches_one_edit(text):
    """A fuzzy term matches words one edit away."""
    assert matches(GLOBEX, text)


@pytest.mark.parametrize(
    "text",
    [
        "glob",  # two deletions
        "gloxbey",  # two edits
        "globexville",
        "goblex",  # not adjacent: two edits
        "@globbex",  # handles are identities
        "gl",
    ],
)
def test_fuzzy_rejects_further_words(text):
    """A fuzzy term rejects words two or more edits away and handles."""
    assert not matches(GLOBEX, text)


def test_fuzzy_off_by_default():
    """Without fuzzy, one edit away is no match."""
    assert not matches(Topic("g", terms=("globex",)), "globbex")


def test_fuzzy_needs_five_letters():
    """Terms under five letters are matched exactly even when fuzzy."""
    topic = Topic("acme", terms=("acme",), fuzzy=True)
    assert matches(topic, "acme")
    for text in ("acmme", "amce", "acm", "acne", "acmeville"):
        assert not matches(topic, text), text


def test_fuzzy_counts_letters_after_normalisation():
    """The five-letter minimum applies to the folded term."""
    topic = Topic("t", terms=("\ufb01nal",), fuzzy=True)  # "fi" ligature
    assert matches(topic, "finla")
    assert not matches(Topic("t", terms=("fina",), fuzzy=True), "finaa")


def test_fuzzy_token_minimum():
    """A 5-letter term matches a 4-letter token, never a shorter one."""
    topic = Topic("t", terms=("abcde",), fuzzy=True)
    assert matches(topic, "abce")
    assert not matches(topic, "abc")


def test_fuzzy_not_for_phrases_hashtags_handles():
    """Phrases, hashtag terms and handle terms are never fuzzy."""
    phrase = Topic("p", terms=("globex corp",), fuzzy=True)
    assert not matches(phrase, "globbex corp")
    assert not matches(Topic("h", terms=("#globex",), fuzzy=True), "#globbex")
    assert not matches(Topic("a", terms=("@globex",), fuzzy=True), "@globbex")


def test_fuzzy_not_for_exclusions():
    """Exclusions veto only exact matches."""
    topic = Topic("g", terms=("globex",), exclude=("careers",), fuzzy=True)
    assert not matches(topic, "globex careers")
    assert matches(topic, "globex career")


# exclusions


def test_exclude_vetoes_topic():
    """Any exclusion in the post stops the topic from matching."""
    topic = Topic(
        "apple",
        terms=("apple",),
        exclude=("apple pie", "#recipe", "@grannysmith", "orchard"),
    )
    assert matches(topic, "new Apple laptop")
    assert not matches(topic, "granny's Apple  Pie")
    assert not matches(topic, "apple crumble #recipe")
    assert not matches(topic, "apple by @grannysmith")
    assert not matches(topic, "the apple orchard")
    assert matches(topic, "apple recipe")
    assert matches(topic, "apple pies")


def test_exclude_anywhere_in_post():
    """An exclusion vetoes even when it comes before the term."""
    topic = Topic("apple", terms=("apple",), exclude=("fruit",))
    assert not matches(topic, "Fruit: apple")


def test_exclude_only_affects_its_topic():
    """One topic's exclusion leaves other topics matching."""
    matcher = Matcher(
        [
            Topic("apple", terms=("apple",), exclude=("pie",)),
            Topic("baking", terms=("pie",)),
        ]
    )
    assert matcher.match(post("apple pie")) == ("baking",)


# languages


LANG = Topic("acme", terms=("acme",), languages=("en", "de"))


@pytest.mark.parametrize("lang", ["en", "EN", "en-GB", "en_US", "de-AT", "de"])
def test_languages_match_primary_subtag(lang):
    """A listed language matches whatever its region."""
    assert matches(LANG, "acme", lang=lang)


@pytest.mark.parametrize("lang", ["fr", "fr-CA", "eng", "es-419"])
def test_languages_reject_other_languages(lang):
    """A post in an unlisted language does not match."""
    assert not matches(LANG, "acme", lang=lang)


@pytest.mark.parametrize("lang", [None, "", "und", " "])
def test_languages_let_unknown_through(lang):
    """Untagged posts match: many sources do not tag languages."""
    assert matches(LANG, "acme", lang=lang)


def test_languages_with_region_in_topic():
    """A topic listing a regional tag matches that tag only."""
    topic = Topic("acme", terms=("acme",), languages=("pt-BR",))
    assert matches(topic, "acme", lang="pt-br")
    assert not matches(topic, "acme", lang="pt-PT")
    assert not matches(topic, "acme", lang="pt")


def test_no_languages_means_all():
    """A topic without languages matches posts in any language."""
    assert matches(ACME, "acme", lang="ja")


# sources


def test_sources_limit_topic():
    """A topic with sources matches only posts from those sources."""
    topic = Topic("acme", terms=("acme",), sources=("mastodon", "bsky"))
    assert matches(topic, "acme", source="mastodon")
    assert matches(topic, "acme", source="bsky")
    assert not matches(topic, "acme", source="x")
    assert not matches(topic, "acme", source="Mastodon")
    assert matches(ACME, "acme", source="x")


# topics together


def test_empty_topic_matches_nothing():
    """A topic with no terms and no variants never matches."""
    assert not matches(Topic("empty"), "anything at all")
    assert not matches(Topic("empty", exclude=("x",)), "anything")
    blank = Topic("blank", terms=("", '""', "!!!", "#"))
    assert not matches(blank, "! # anything")


def test_many_topics_in_topic_order():
    """One post can match several topics; names come in topic order."""
    matcher = Matcher(
        [
            Topic("zeta", terms=("#cloud",)),
            Topic("acme", terms=("acme",)),
            Topic("globex", terms=("globex",)),
            Topic("outage", terms=("outage", "is down")),
        ]
    )
    result = matcher.match(post("Acme is down again, #cloud outage. Acme!"))
    assert result == ("zeta", "acme", "outage")


def test_unmatched_post_returns_empty_tuple():
    """A post that mentions no topic gets an empty tuple."""
    matcher = Matcher([ACME, GLOBEX])
    assert matcher.match(post("nothing to see here")) == ()
    assert matcher.match(post("")) == ()
    assert Matcher([]).match(post("acme")) == ()


def test_match_uses_post_fields():
    """match reads the post's text, language and source."""
    topic = Topic("acme", terms=("acme",), languages=("en",), sources=("x",))
    matcher = Matcher([topic])
    assert matcher.match(post("acme", lang="en", source="x")) == ("acme",)
    assert matcher.match(post("acme", lang="fr", source="x")) == ()
    assert matcher.match(post("acme", lang="en", source="y")) == ()
    assert matcher.match_text("acme", lang="en-GB", source="x") == ("acme",)
    assert matcher.match_text("acme") == ()


def test_duplicate_terms_and_names():
    """Repeated terms and topic names give each name once."""
    matcher = Matcher(
        [
            Topic("acme", terms=("acme", "ACME", "acme")),
            Topic("acme", terms=("acme corp",)),
        ]
    )
    assert matcher.match_text("acme corp acme") == ("acme",)


def test_topics_iterable_consumed_once():
    """A generator of topics is enough; the matcher keeps them."""
    matcher = Matcher(t for t in [ACME, GLOBEX])
    assert matcher.topics == (ACME, GLOBEX)
    assert matcher.match_text("globex acme") == ("acme", "globex")


# properties


def osa_distance(a, b):
    """
    Reference optimal string alignment distance, for checking the bounded
    check.
    """
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            swapped = a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]
            if i > 1 and j > 1 and swapped:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


short_words = st.text(alphabet="abcd", max_size=6)


@given(short_words, short_words)
def test_within_one_edit_agrees_with_reference(a, b):
    """The bounded edit check agrees with a full distance computation."""
    assert _within_one_edit(a, b) == (osa_distance(a, b) <= 1)


@given(st.text())
def test_normalize_is_idempotent(text):
    """Normalising twice changes nothing."""
    assert normalize(normalize(text)) == normalize(text)


TERMS = ("acme", "#acme", "@acme", "globex", "acme cloud", "café")
WORDS = (
    "acme",
    "Acme",
    "ACME",
    "acmeville",
    "globex",
    "glbex",
    "golbex",
    "cloud",
    "café",
    "CAFE",
    "the",
    "down",
    "is",
)
SEPARATORS = (" ", "  ", "#", "@", ". ", "-", "'", "\n", ", #", " @", "!")

texts = st.lists(st.tuples(st.sampled_from(SEPARATORS), st.sampled_from(WORDS)), max_size=12).map(
    lambda parts: "".join(s + w for s, w in parts)
)

topic_strategy = st.builds(
    Topic,
    name=st.sampled_from("abcdef"),
    terms=st.lists(st.sampled_from(TERMS), max_size=3).map(tuple),
    exclude=st.lists(st.sampled_from(("down", "acme cloud", "#cloud")), max_size=1).map(tuple),
    fuzzy=st.booleans(),
)


@given(st.lists(topic_strategy, max_size=5), texts)
def test_case_does_not_matter(topics, text):
    """Upper- or lower-casing a post never changes what it matches."""
    matcher = Matcher(topics)
    result = matcher.match_text(text)
    assert matcher.match_text(text.upper()) == result
    assert matcher.match_text(text.lower()) == result


def reference_match(topics, text):
    """
    A slow, obviously correct matcher: every term of every topic against
    every position in the tokens.
    """
    tokens = tokenize(text)

    def found(term, fuzzy):
        want = tokenize(term.strip('"'))
        if not want:
            return False
        for i in range(len(tokens) - len(want) + 1):
            window = tokens[i : i + len(want)]
            first, head = want[0], window[0]
            if first[0] in "#@":
                ok = head == first
            else:
                ok = head.lstrip("#@") == first
            if ok and [w.lstrip("#@") for w in window[1:]] == want[1:]:
                return True
            if (
                fuzzy
                and len(want) == 1
                and first[0] not in "#@"
                and len(first) >= 5
                and not head.startswith("@")
                and len(head.lstrip("#")) >= 4
                and osa_distance(head.lstrip("#"), first) <= 1
            ):
                return True
        return False

    names = []
    for topic in topics:
        if any(found(t, False) for t in topic.exclude):
            continue
        if any(found(t, topic.fuzzy) for t in topic.terms) or any(found(t, False) for t in topic.variants):
            if topic.name not in names:
                names.append(topic.name)
    return tuple(names)


@given(st.lists(topic_strategy, max_size=5), texts)
def test_agrees_with_reference(topics, text):
    """The indexed matcher gives what checking every term would give."""
    assert Matcher(topics).match_text(text) == reference_match(topics, text)


@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=80),
    st.sampled_from(TERMS),
    st.booleans(),
)
def test_no_term_letters_no_match(text, term, fuzzy):
    """Text without any letter of the term never matches it, fuzzy or not."""
    letters = set(normalize(term)) - set(" #@")
    assume(not letters & set(normalize(text)))
    matcher = Matcher([Topic("t", terms=(term,), fuzzy=fuzzy)])
    assert matcher.match_text(text) == ()


@given(texts, st.sampled_from(WORDS))
def test_appending_unrelated_text_keeps_matches(text, word):
    """Adding a sentence never removes a match when there are no exclusions."""
    matcher = Matcher([Topic(t, terms=(t,)) for t in TERMS])
    before = set(matcher.match_text(text))
    assert before <= set(matcher.match_text(text + ". " + word))


# scale


def test_scale_500_topics_2000_posts():
    """500 full-featured topics match 2,000 posts correctly."""
    rng = random.Random(20240601)
    names = set()
    while len(names) < 500:
        letters = (rng.choice(string.ascii_lowercase) for _ in range(8))
        names.add("".join(letters))
    names = sorted(names)
    topics = []
    for i, word in enumerate(names):
        topics.append(
            Topic(
                name=f"topic{i}",
                terms=(word, f"#{word}tag", f"@{word}hq", f'"{word} cloud"'),
                variants=(word[::-1],),
                fuzzy=i % 10 == 0,
                exclude=(f"{word} careers",),
                languages=("en",) if i % 7 == 0 else (),
                sources=("x",) if i % 11 == 0 else (),
            )
        )
    matcher = Matcher(topics)
    matched = 0
    for n in range(2000):
        i = n % 500
        word = names[i]
        form = n % 4
        text = (
            f"Filler text about {word}! nothing else",
            f"Look: #{word.upper()}TAG today",
            f"ask @{word}hq@mastodon.social now",
            f"Reversed {word[::-1]} is a variant",
        )[form]
        result = matcher.match(post(text, lang="en", source="x"))
        assert result == (f"topic{i}",), (n, text, result)
        matched += 1
    assert matched == 2000

    word0 = names[0]
    typo = word0[0] + word0[2] + word0[1] + word0[3:]
    typo_post = post(f"I love {typo}", lang="en", source="x")
    assert matcher.match(typo_post) == ("topic0",)
    typo1 = names[1][0] + names[1][2] + names[1][1] + names[1][3:]
    assert matcher.match(post(f"I love {typo1}", source="x")) == ()
    assert matcher.match(post(f"{word0} careers page", source="x")) == ()
    french = post(f"{word0} {names[1]}", lang="fr", source="x")
    assert matcher.match(french) == ("topic1",)
    assert matcher.match(post(f"{names[11]} and {names[12]}", source="y")) == ("topic12",)
    assert matcher.match(post("no topics in this one at all")) == ()
