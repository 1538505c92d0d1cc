"""
Tests for the replay post format, L{monitor.collect.jsonl}.
"""

import json
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.collect import jsonl
from monitor.collect.jsonl import MAX_LINE, MalformedPayload, format_post, parse_post
from monitor.model import Post, parse_time

FULL = {
    "id": "1780000000000000001",
    "text": "@acmesupport my order is still not here 😡",
    "author": "maria_k",
    "created_at": "2024-05-01T12:30:00.250Z",
    "lang": "en",
    "url": "https://example.com/maria_k/1",
    "likes": 12,
    "reposts": 3,
    "replies": 1,
    "author_followers": 5400,
    "author_verified": True,
    "lat": 51.5,
    "lon": -0.12,
}
MINIMAL = {"id": 7, "text": "", "author": "x", "created_at": 1714566600}
REPLAY_FIELDS = (
    "native_id",
    "text",
    "author",
    "url",
    "lang",
    "likes",
    "reposts",
    "replies",
    "author_followers",
    "author_verified",
    "lat",
    "lon",
)


def line(d, **changes):
    """
    Encode C{d}, with C{changes} applied (C{None} removes a key), as a line.
    """
    d = dict(d)
    for key, value in changes.items():
        if value is None:
            d.pop(key, None)
        else:
            d[key] = value
    return json.dumps(d, ensure_ascii=False).encode("utf-8") + b"\n"


def parse(data):
    return parse_post(data, "replay", "x", 1000.5)


def test_all_fields():
    """A line with every field fills every replay field of the post."""
    post = parse(line(FULL))
    assert post == Post(
        source="replay",
        network="x",
        native_id="1780000000000000001",
        text=FULL["text"],
        author="maria_k",
        created_at=parse_time(FULL["created_at"]),
        url=FULL["url"],
        lang="en",
        likes=12,
        reposts=3,
        replies=1,
        author_followers=5400,
        author_verified=True,
        lat=51.5,
        lon=-0.12,
        received_at=1000.5,
    )
    assert post.cursor is None
    assert post.uid == "x:1780000000000000001"


def test_minimal_fields():
    """Only id, text, author and created_at are needed; the rest defaults."""
    post = parse(line(MINIMAL))
    assert post.native_id == "7"
    assert post.text == ""
    assert post.created_at == 1714566600.0
    assert (post.lang, post.url, post.author_followers, post.lat, post.lon) == (None,) * 5
    assert (post.likes, post.reposts, post.replies, post.author_verified) == (0, 0, 0, False)


def test_null_optional_fields_are_missing():
    """An optional field that is null reads as if it were absent."""
    nulls = {
        k: None
        for k in ("lang", "url", "likes", "reposts", "replies", "author_followers", "author_verified", "lat", "lon")
    }
    post = parse(json.dumps({**MINIMAL, **nulls}).encode())
    assert post == parse(line(MINIMAL))


def test_unknown_fields_ignored():
    """Fields this version does not know are ignored, for forward compatibility."""
    post = parse(line(MINIMAL, quoted={"id": 3}, media=[1, 2], source="evil"))
    assert post.native_id == "7"
    assert post.source == "replay"


@pytest.mark.parametrize(
    "data",
    [
        b"\xef\xbb\xbf" + line(MINIMAL),
        line(MINIMAL).rstrip(b"\n") + b"\r\n",
        line(MINIMAL).rstrip(b"\n"),
        b"  " + line(MINIMAL),
    ],
)
def test_bom_and_line_endings(data):
    """A byte order mark, CRLF, no line ending or leading blanks are fine."""
    assert parse(data).native_id == "7"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2024-05-01T12:30:00Z", 1714566600.0),
        ("2024-05-01T14:30:00+02:00", 1714566600.0),
        ("2024-05-01T12:30:00", 1714566600.0),
        (1714566600, 1714566600.0),
        (1714566600.5, 1714566600.5),
    ],
)
def test_created_at_forms(value, expected):
    """created_at is ISO 8601 (zoneless means UTC) or unix seconds."""
    assert parse(line(MINIMAL, created_at=value)).created_at == expected


MALFORMED = [
    (b"", "invalid JSON"),
    (b"{", "invalid JSON"),
    (b'{"id": NaN}', "invalid JSON"),
    (b"\xff\xfe{}", "invalid UTF-8"),
    (b"[1, 2]", "not a JSON object"),
    (b'"just a string"', "not a JSON object"),
    (b"[" * 100_000, "invalid JSON"),
    (b'{"id": 1' + b"0" * 5000 + b"}", "invalid JSON"),
    (line(MINIMAL, id=None), "id: required"),
    (line(MINIMAL, id=""), "id: must be a non-empty"),
    (line(MINIMAL, id="  "), "id: must be a non-empty"),
    (line(MINIMAL, id=1.5), "id: must be a non-empty"),
    (line(MINIMAL, id=True), "id: must be a non-empty"),
    (line(MINIMAL, id=[1]), "id: must be a non-empty"),
    (line(MINIMAL, text=None), "text: required"),
    (line(MINIMAL, text=5), "text: must be a string"),
    (line(MINIMAL, text="a\x00b"), "text: contains a NUL"),
    (b'{"id":1,"text":"\\ud800","author":"x","created_at":1}', "text: contains an unpaired surrogate"),
    (line(MINIMAL, author=None), "author: required"),
    (line(MINIMAL, author=""), "author: must not be empty"),
    (line(MINIMAL, author=42), "author: must be a string"),
    (line(MINIMAL, created_at=None), "created_at: required"),
    (line(MINIMAL, created_at="yesterday"), "created_at: not an ISO 8601 timestamp: 'yesterday'"),
    (line(MINIMAL, created_at=True), "created_at: must be"),
    (line(MINIMAL, created_at={"t": 1}), "created_at: must be"),
    (line(MINIMAL, created_at=1e300), "created_at: out of range"),
    (b'{"id":1,"text":"","author":"x","created_at":1e999}', "created_at: out of range"),
    (line(MINIMAL, lang=3), "lang: must be a string"),
    (line(MINIMAL, url="javascript:alert(1)"), "url: must be an absolute http or https URL"),
    (line(MINIMAL, url="ftp://example.com/x"), "url: must be an absolute http"),
    (line(MINIMAL, url="/relative/path"), "url: must be an absolute http"),
    (line(MINIMAL, url="http://[::1"), "url: must be an absolute http"),
    (line(MINIMAL, url="https://a.example/x y"), "url: must be an absolute http"),
    (line(MINIMAL, url=7), "url: must be a string"),
    (line(MINIMAL, likes=-1), "likes: must be a non-negative integer"),
    (line(MINIMAL, likes=1.0), "likes: must be a non-negative integer"),
    (line(MINIMAL, likes=True), "likes: must be a non-negative integer"),
    (line(MINIMAL, likes="5"), "likes: must be a non-negative integer"),
    (line(MINIMAL, reposts=-3), "reposts: must be a non-negative integer"),
    (line(MINIMAL, replies=[]), "replies: must be a non-negative integer"),
    (line(MINIMAL, replies=2**64), "replies: too large"),
    (line(MINIMAL, author_followers=-1), "author_followers: must be a non-negative integer"),
    (line(MINIMAL, author_verified="yes"), "author_verified: must be true or false"),
    (line(MINIMAL, author_verified=1), "author_verified: must be true or false"),
    (line(MINIMAL, lat=91, lon=0), "lat: must be between -90 and 90"),
    (line(MINIMAL, lat=0, lon=-180.5), "lon: must be between -180 and 180"),
    (line(MINIMAL, lat="51", lon=0), "lat: must be a number"),
    (line(MINIMAL, lat=False, lon=0), "lat: must be a number"),
    (line(MINIMAL, lat=51.5), "lat: given without lon"),
    (line(MINIMAL, lon=0.1), "lon: given without lat"),
]


@pytest.mark.parametrize("data, reason", MALFORMED)
def test_malformed(data, reason):
    """Each problem raises MalformedPayload with a reason naming it."""
    with pytest.raises(MalformedPayload) as info:
        parse(data)
    assert info.value.reason.startswith(reason)
    assert str(info.value) == info.value.reason
    assert len(info.value.reason) < 200


def test_line_too_long():
    """A line over MAX_LINE bytes is refused without being parsed."""
    data = line(MINIMAL, text="a" * MAX_LINE)
    with pytest.raises(MalformedPayload) as info:
        parse(data)
    assert info.value.reason == f"line too long ({len(data) - 1} bytes > {MAX_LINE})"


def test_line_at_limit():
    """A line of exactly MAX_LINE bytes, plus its line ending, is accepted."""
    data = line(MINIMAL, text="")
    data = line(MINIMAL, text="a" * (MAX_LINE - len(data) + 1))
    assert len(data) == MAX_LINE + 1
    assert len(parse(data).text) > MAX_LINE - 100


def test_untrusted_text_untouched():
    """HTML, emoji and odd whitespace in text come through byte for byte."""
    text = '<script>alert("x")</script> &amp; <b>Acme</b> 😡🙌❤️ \u2028 e\u0301 \t tab'
    post = parse(line(MINIMAL, text=text, author="<img src=x onerror=alert(1)>"))
    assert post.text == text
    assert post.author == "<img src=x onerror=alert(1)>"
    assert parse(format_post(post)).text == text


def test_format_post_is_one_line():
    """format_post writes one newline-terminated line, even for text with line breaks."""
    post = parse(line(FULL, text="one\ntwo\r\nthree\u2028four\u2029five\x85six"))
    data = format_post(post)
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    assert len(data.decode("utf-8").splitlines()) == 1
    assert parse(data).text == post.text


def test_round_trip_full():
    """parse_post(format_post(p)) gives back every replay field."""
    post = parse(line(FULL))
    again = parse(format_post(post))
    assert again == post


def test_format_post_leaves_out_none():
    """Fields that are None are not written at all."""
    decoded = json.loads(format_post(parse(line(MINIMAL))))
    assert set(decoded) == {"id", "text", "author", "created_at", "likes", "reposts", "replies", "author_verified"}
    assert decoded["created_at"] == "2024-05-01T12:30:00.000Z"


text_st = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
counts = st.integers(min_value=0, max_value=2**63 - 1)
coordinates = st.one_of(
    st.none(),
    st.tuples(st.floats(-90, 90, allow_nan=False), st.floats(-180, 180, allow_nan=False)),
)
posts = st.builds(
    lambda native_id, text, author, millis, lang, url, likes, reposts, replies, followers, verified, coords: Post(
        source="replay",
        network="x",
        native_id=native_id,
        text=text,
        author=author,
        created_at=millis / 1000,
        lang=lang,
        url=url,
        likes=likes,
        reposts=reposts,
        replies=replies,
        author_followers=followers,
        author_verified=verified,
        lat=coords[0] if coords else None,
        lon=coords[1] if coords else None,
        received_at=1000.5,
    ),
    text_st.filter(str.strip),
    text_st,
    text_st.filter(str.strip),
    st.integers(min_value=0, max_value=253402300799000),
    st.none() | text_st,
    st.none() | st.builds("https://example.com/{}".format, st.integers(0)),
    counts,
    counts,
    counts,
    st.none() | counts,
    st.booleans(),
    coordinates,
)


@given(posts)
def test_round_trip_property(post):
    """Any post with valid replay fields survives format then parse."""
    again = parse(format_post(post))
    assert again == post


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
FIELDS = [
    "id",
    "text",
    "author",
    "created_at",
    "lang",
    "url",
    "likes",
    "reposts",
    "replies",
    "author_followers",
    "author_verified",
    "lat",
    "lon",
]


def outcome(data):
    """The post parsed from C{data}, or the reason it is refused."""
    try:
        return parse(data)
    except MalformedPayload as e:
        assert e.reason
        return e.reason


def by_json(data):
    """L{outcome} with the standard library's json decoder, as before orjson."""
    with mock.patch.object(jsonl, "_load", jsonl._load_slowly):
        return outcome(data)


def check(data):
    """
    Parsing gives a Post or MalformedPayload, nothing else, and the same
    post or the same reason as decoding with json.
    """
    result = outcome(data)
    assert result == by_json(data), data
    if not isinstance(result, str):
        assert isinstance(result, Post)
        format_post(result)


@pytest.mark.parametrize(
    "data",
    [
        b'{"id": 123456789012345678901234567890, "text": "", "author": "a", "created_at": 0}',
        b'{"id": 1, "text": 18446744073709551616, "author": "a", "created_at": 0}',
        b'{"id": 1, "text": "", "author": "a", "created_at": 0, "likes": 18446744073709551615}',
        b'{"id": 1, "text": "", "author": "a", "created_at": 0, "likes": 1e19}',
        b'{"id": 1, "text": "", "author": "a", "created_at": -9223372036854775809}',
        b'{"id": 1, "text": "", "author": "a", "created_at": 1e400}',
        b'{"id": 1, "text": "\\ud800", "author": "a", "created_at": 0}',
        b'{"id": 1, "text": "\xed\xa0\x80", "author": "a", "created_at": 0}',
        b'{"id": 1, "text": "tab\there", "author": "a", "created_at": 0}',
        b'{"id": 1, "text": "\\u0000", "author": "a", "created_at": 0}',
        b'{"id": 1, "text": "x", "author": "a", "created_at": NaN}',
        b'{"id": 1, "id": 2, "text": "x", "author": "a", "created_at": 0}',
        b'\x0c{"id": 1, "text": "x", "author": "a", "created_at": 0}',
        b"\xe3\x80\x80",
        b"[" * 3000 + b"]" * 3000,
        b'{"a": ' * 1100 + b"1" + b"}" * 1100,
        b"[]",
        b'"text"',
    ],
)
def test_orjson_and_json_agree(data):
    """Lines orjson reads differently or refuses get json's post or json's reason."""
    check(data)


def shared_lines(data_dir):
    from tests.analysis.test_vader import shared_texts

    for n, text in enumerate(shared_texts(data_dir)):
        yield format_post(
            Post(
                source="r",
                network="x",
                native_id=str(n),
                text=text,
                author=f"a{n}",
                created_at=1.7e9 + n,
                lat=n % 90 / 1.7,
                lon=-n % 180 / 3.1,
                likes=n,
            )
        )


def test_shared_texts_parse_the_same(shared_data):
    """Every post of the shared data sets, as a replay line, parses as json parsed it."""
    for data in shared_lines(shared_data):
        post = parse(data)
        assert post == by_json(data)


@settings(max_examples=300)
@given(st.from_regex(r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][-+]?[0-9]{1,3})?", fullmatch=True))
def test_number_literals_read_alike(number):
    """A number literal decodes to the same int or float as json reads it."""
    check(
        b'{"id": 1, "text": "", "author": "a", "created_at": 0, "lat": %s, "lon": %s, "likes": %s}'
        % (number.encode(), number.encode(), number.encode())
    )


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_fuzz_bytes(data):
    """Arbitrary bytes never raise anything but MalformedPayload."""
    check(data)


@settings(max_examples=300)
@given(json_values)
def test_fuzz_json(value):
    """Arbitrary JSON values never raise anything but MalformedPayload."""
    check(json.dumps(value).encode("utf-8"))


@settings(max_examples=500)
@given(st.fixed_dictionaries({}, optional={k: json_values for k in FIELDS}))
def test_fuzz_post_shaped(d):
    """Objects with the known keys and arbitrary values are parsed or refused cleanly."""
    check(json.dumps(d).encode("utf-8"))


@settings(max_examples=300)
@given(
    st.fixed_dictionaries(
        {
            "id": st.integers() | st.text(),
            "text": st.text(),
            "author": st.text(),
            "created_at": st.text() | st.floats() | st.integers(),
        },
        optional={k: json_values for k in FIELDS[4:]},
    )
)
def test_fuzz_nearly_valid(d):
    """Objects with every required key, of roughly the right type, parse or fail cleanly."""
    check(json.dumps(d).encode("utf-8"))


def dict_outcome(parse_d, d):
    """What parsing C{d} gives: a post, C{None} (handed on), or the reason."""
    try:
        return parse_d(d, "replay", "x", 1000.5)
    except MalformedPayload as e:
        return e.reason


plain_posts = st.fixed_dictionaries(
    {
        "id": st.integers(0, 2**70) | st.text(min_size=1),
        "text": st.text(),
        "author": st.text(min_size=1),
        "created_at": st.text() | st.floats() | st.integers() | st.just("2024-05-01T12:30:00.250Z"),
    },
    optional={
        "lang": st.none() | st.text(max_size=8),
        "url": st.none() | st.just("https://example.com/a/1") | st.text(max_size=12),
        "likes": st.none() | st.integers(-2, 2**64),
        "reposts": st.none() | st.integers(0, 9),
        "replies": st.none() | st.integers(0, 9),
        "author_followers": st.none() | st.integers(-1, 2**64) | st.booleans(),
        "author_verified": st.none() | st.booleans() | st.integers(0, 1),
        "lat": st.none() | st.floats(-100, 100),
        "lon": st.none() | st.floats(-200, 200),
    },
)


@settings(max_examples=500)
@given(plain_posts | st.fixed_dictionaries({}, optional={k: json_values for k in FIELDS}))
def test_plain_path_agrees_with_checks(d):
    """The usual lines' quick path gives the field-by-field checks' post or reason, or hands the line on."""
    fast = dict_outcome(jsonl._parse_plain, d)
    if fast is not None:
        assert fast == dict_outcome(jsonl._parse_checked, d)


def test_plain_path_takes_usual_posts():
    """The lines the bench and most sources write take the quick path (and give the same post)."""
    for d in (MINIMAL, dict(FULL, lat=None, lon=None), dict(MINIMAL, lang="en", url="https://example.com/x")):
        post = jsonl._parse_plain(d, "replay", "x", 1000.5)
        assert post is not None
        assert post == jsonl._parse_checked(d, "replay", "x", 1000.5)
    assert jsonl._parse_plain(FULL, "replay", "x", 1000.5) is None  # a place: the checks read it
