"""
The RSS/Atom collector in memory: the fake feed server behind treq's
StubTreq, time driven by Clock.  Item keys and fields, conditional requests,
redirects, 410, Retry-After, bad XML, and the cursor across a restart.
"""

import json

from treq.testing import StubTreq
from twisted.internet.task import Clock

from monitor.collect.base import BACKING_OFF, CONNECTED, FAILING, RATE_LIMITED
from monitor.collect.rss import RSSSource, parse_date, parse_feed
from monitor.config import ConfigError, parse_config
from monitor.metrics import Metrics
from monitor.queue.memory import MemoryQueue
from tests.fakes.rss import FakeFeeds
from tests.fakes.store import CursorStore

START = 1767225600.0  # 2026-01-01T00:00:00Z
BASE = "http://feeds.test"


class Harness:
    """An RSS collector wired to the fake feeds in memory."""

    def __init__(self, paths=("/a.rss",), cursor=None, fake=None, **kw):
        self.clock = Clock()
        self.clock.advance(START)
        self.fake = fake or FakeFeeds(self.clock)
        self.fake.clock = self.clock
        self.queue = MemoryQueue(100000, reactor=self.clock)
        self.store = CursorStore(cursor)
        kw.setdefault("poll_interval", 300.0)
        self.source = RSSSource(
            "news", self.queue, self.store, Metrics(), feeds=[BASE + p for p in paths], reactor=self.clock, **kw
        )
        self.source.http_client = StubTreq(self.fake)
        self.committed = cursor

    def start(self):
        self.source.startService()
        self.clock.advance(0)
        return self

    def turn(self, seconds=0.0):
        self.clock.advance(seconds)
        self.clock.advance(0)

    def take(self):
        out = []
        while self.queue.size():
            self.queue.get(100000).addCallback(out.extend)
            self.turn()
        for p in out:
            if p.cursor is not None:
                self.committed = p.cursor
        return out

    def stop(self):
        self.source.stopService()


# --- parsing ---------------------------------------------------------------------------

RSS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
     xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel><title>Acme News</title><link>https://news.example/</link><description>d</description>
<language>en-us</language>
<item><title>Acme outage</title><link>https://news.example/acme</link>
 <guid isPermaLink="false">news.example:4711</guid><pubDate>Thu, 01 Jan 2026 12:00:00 GMT</pubDate>
 <description>&lt;p&gt;Acme is &lt;b&gt;down&lt;/b&gt; &#x1F525;&lt;/p&gt;</description>
 <dc:creator>Jane Reporter</dc:creator></item>
<item><title>Only a link</title><link>https://news.example/link-only</link></item>
<item><title>Permalink guid</title><guid>https://news.example/perma</guid></item>
<item><title>Nothing but a title</title><pubDate>Fri, 02 Jan 2026 08:00:00 +0100</pubDate></item>
<item><description>Body only, in content too</description>
 <content:encoded><![CDATA[<p>Full <i>article</i></p>]]></content:encoded>
 <dc:date>2026-01-03T00:00:00Z</dc:date></item>
<item><category>empty</category></item>
</channel></rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="de">
 <id>urn:feed</id><title>Globex Blog</title><updated>2026-01-01T00:00:00Z</updated>
 <author><name>Globex team</name></author>
 <entry><id>urn:e1</id><title type="html">Globex &amp;lt;3 users</title>
  <updated>2026-01-02T00:00:00Z</updated><published>2026-01-01T10:00:00+02:00</published>
  <link rel="replies" href="/e1#comments"/><link href="/e1"/>
  <summary type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>Hello <b>world</b> 🌍</p></div></summary>
 </entry>
 <entry><id>urn:e2</id><title>Second</title><updated>2026-01-02T00:00:00Z</updated>
  <content type="html">&lt;p&gt;Some &lt;em&gt;content&lt;/em&gt;&lt;/p&gt;</content>
  <author><name>Bob</name></author></entry>
</feed>""".encode()


def test_rss_items_keys_and_fields():
    """RSS keys by guid, then link, then a hash of title and date; HTML to text; content:encoded and dc: read."""
    items, bad = parse_feed(RSS, BASE + "/a.rss")
    assert [i.key for i in items[:3]] == [
        "news.example:4711",
        "https://news.example/link-only",
        "https://news.example/perma",
    ]
    assert items[3].key.startswith("h:") and len(items[3].key) == 42
    a = items[0]
    assert (a.title, a.summary, a.author, a.link, a.lang) == (
        "Acme outage",
        "Acme is down 🔥",
        "Jane Reporter",
        "https://news.example/acme",
        "en-us",
    )
    assert items[2].link == "https://news.example/perma"
    assert items[4].summary == "Body only, in content too" and items[4].date == "2026-01-03T00:00:00Z"
    assert items[4].author == "Acme News"
    assert len(bad) == 1 and b"<category>" in bad[0][0]


def test_atom_entries():
    """Atom keys by id; html and xhtml text constructs to text; alternate link resolved; author and lang inherited."""
    items, bad = parse_feed(ATOM, BASE + "/g.atom")
    assert bad == []
    e1, e2 = items
    assert (e1.key, e1.title, e1.summary, e1.link) == ("urn:e1", "Globex <3 users", "Hello world 🌍", BASE + "/e1")
    assert (e1.author, e1.lang, e1.date) == ("Globex team", "de", "2026-01-01T10:00:00+02:00")
    assert (e2.summary, e2.author, e2.link) == ("Some content", "Bob", None)


def test_bad_documents():
    """Broken XML, entity bombs and documents that are not feeds raise NotAFeed."""
    import pytest

    from monitor.collect.rss import NotAFeed

    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
        b"<rss><channel><title>&b;</title></channel></rss>"
    )
    for body in (b"<rss><channel><item><title>trunc", bomb, b"<html><body>hi</body></html>", b"", b"\xff\xfe"):
        with pytest.raises(NotAFeed):
            parse_feed(body, BASE)


def test_dates_tolerated():
    """RFC 822 with names or offsets, RFC 3339, no zone (UTC); nonsense gives None."""
    assert parse_date("Thu, 01 Jan 2026 12:00:00 GMT") == START + 12 * 3600
    assert parse_date("01 Jan 2026 13:00:00 +0100") == START + 12 * 3600
    assert parse_date("Mon, 01 Jan 2026 12:00:00 GMT") == START + 12 * 3600  # wrong weekday
    assert parse_date("2026-01-01T12:00:00Z") == START + 12 * 3600
    assert parse_date("Thu, 01 Jan 2026 12:00:00") == START + 12 * 3600
    assert parse_date("yesterday") is None and parse_date(None) is None


def test_config_needs_feeds_and_urls():
    """An rss source needs feeds or url, and they must be http(s) URLs."""
    import pytest

    ok = parse_config({"sources": [{"kind": "rss", "name": "n", "url": "https://a.example/feed"}]})
    assert ok.sources[0]["feeds"] == [] and ok.sources[0]["poll_interval"] == 300.0
    with pytest.raises(ConfigError) as e:
        parse_config(
            {
                "sources": [
                    {"kind": "rss", "name": "n"},
                    {"kind": "rss", "name": "m", "feeds": ["ftp://x/feed", "https://ok.example/"]},
                ]
            }
        )
    problems = e.value.problems
    assert any("sources[0].feeds" in p and "give the feeds" in p for p in problems)
    assert any("sources[1].feeds" in p and "ftp://x/feed" in p for p in problems)


# --- polling -------------------------------------------------------------------------------


def test_poll_emits_items_with_cursor_then_304():
    """First poll emits every item oldest first, the last with the cursor; next polls are conditional (304)."""
    h = Harness()
    h.fake.set_feed(
        "/a.rss",
        items=[
            {"title": "One", "guid": "g1", "pubDate": "Thu, 01 Jan 2026 10:00:00 GMT", "description": "<p>first</p>"},
            {
                "title": "Two",
                "guid": "g2",
                "pubDate": "Thu, 01 Jan 2026 11:00:00 GMT",
                "description": "second &amp; more",
            },
        ],
    )
    h.start()
    posts = h.take()
    assert [p.text for p in posts] == ["One — first", "Two — second & more"]
    assert [p.native_id for p in posts] == [BASE + "/a.rss#g1", BASE + "/a.rss#g2"]
    assert posts[0].uid == "rss:" + BASE + "/a.rss#g1" and posts[0].created_at == START + 10 * 3600
    assert posts[0].cursor is None
    doc = json.loads(posts[1].cursor)["feeds"][BASE + "/a.rss"]
    assert doc["etag"] == h.fake.feeds["/a.rss"].etag and doc["modified"].endswith("GMT") and len(doc["seen"]) == 2
    assert h.source.state == CONNECTED
    first = h.fake.seen("/a.rss")[0]
    assert "if-none-match" not in first.headers and first.headers["user-agent"].startswith("monitor/")
    assert "application/rss+xml" in first.headers["accept"]
    h.turn(300)
    again = h.fake.seen("/a.rss")[1]
    assert again.headers["if-none-match"] == h.fake.feeds["/a.rss"].etag
    assert again.headers["if-modified-since"] == doc["modified"]
    assert h.take() == [] and h.source.state == CONNECTED
    h.fake.add_item("/a.rss", title="Three", guid="g3")
    h.turn(300)
    assert [p.text for p in h.take()] == ["Three"]
    h.stop()


def test_weak_etag_echoed_and_last_modified_alone():
    """A weak ETag is sent back exactly (W/ and quotes); a feed with only Last-Modified gets If-Modified-Since."""
    h = Harness(paths=("/w.rss", "/m.rss"))
    h.fake.set_feed("/w.rss", items=[{"title": "w", "guid": "1"}], weak=True)
    h.fake.set_feed("/m.rss", items=[{"title": "m", "guid": "1"}], etag=False)
    h.start()
    assert len(h.take()) == 2
    h.turn(300)
    w, m = h.fake.seen("/w.rss")[-1], h.fake.seen("/m.rss")[-1]
    assert w.headers["if-none-match"] == 'W/"v2"'
    assert "if-none-match" not in m.headers and m.headers["if-modified-since"].endswith("GMT")
    assert h.take() == []
    h.stop()


def test_changed_feed_emits_only_new_items_and_edits_are_not_new():
    """A changed document (200) yields only unseen keys; an Atom entry whose updated changed is not new."""
    h = Harness(paths=("/g.atom",))
    h.fake.set_feed("/g.atom", kind="atom", items=[{"title": "first", "id": "urn:1", "summary": "s"}])
    h.start()
    assert [p.native_id for p in h.take()] == [BASE + "/g.atom#urn:1"]
    h.fake.update_item("/g.atom", 0, updated="2026-01-05T00:00:00Z", title="first (edited)")
    h.fake.add_item("/g.atom", title="second", id="urn:2")
    h.turn(300)
    assert [p.native_id for p in h.take()] == [BASE + "/g.atom#urn:2"]
    h.stop()


def test_restart_from_cursor_no_duplicates_no_loss():
    """After a restart with the committed cursor: validators sent, seen items skipped, new ones emitted."""
    h = Harness()
    h.fake.set_feed("/a.rss", items=[{"title": "One", "guid": "g1"}])
    h.start()
    h.take()
    h.stop()
    h.fake.add_item("/a.rss", title="Two", guid="g2")
    h2 = Harness(cursor=h.committed, fake=h.fake)
    h2.start()
    assert [p.text for p in h2.take()] == ["Two"]
    assert h2.fake.seen("/a.rss")[-1].headers["if-none-match"] == '"v2"'
    h2.stop()


def test_moved_permanently_updates_url_keeps_ids():
    """301: the new URL is used from then on and saved; post ids stay keyed on the configured URL."""
    h = Harness()
    h.fake.set_feed("/a.rss", items=[{"title": "One", "guid": "g1"}])
    h.fake.move("/a.rss", "/new.rss")
    h.start()
    (p,) = h.take()
    assert p.native_id == BASE + "/a.rss#g1"
    assert json.loads(p.cursor)["feeds"][BASE + "/a.rss"]["url"] == BASE + "/new.rss"
    assert h.source.feeds[0].url == BASE + "/new.rss"
    h.fake.add_item("/new.rss", title="Two", guid="g2")
    h.turn(300)
    assert [p.native_id for p in h.take()] == [BASE + "/a.rss#g2"]
    assert len(h.fake.seen("/a.rss")) == 1 and len(h.fake.seen("/new.rss")) == 2
    assert h.source.status()["feeds"][0]["current_url"] == BASE + "/new.rss"
    h.stop()


def test_temporary_redirect_followed_not_saved():
    """302/307: followed for this request only; the saved URL stays."""
    h = Harness()
    h.fake.set_feed("/tmp.rss", items=[{"title": "One", "guid": "g1"}])
    h.fake.script("/a.rss", 307, headers={"Location": BASE + "/tmp.rss"})
    h.start()
    assert len(h.take()) == 1 and h.source.feeds[0].url == BASE + "/a.rss"
    h.stop()


def test_gone_stops_polling_that_feed():
    """410: the feed is failing and never asked again; the other feeds go on; all gone stops the source."""
    h = Harness(paths=("/a.rss", "/b.rss"))
    h.fake.set_feed("/b.rss", items=[{"title": "b", "guid": "1"}])
    h.fake.gone("/a.rss")
    h.start()
    assert len(h.take()) == 1
    assert h.source.state == FAILING and "410" in h.source.last_error
    for _ in range(3):
        h.turn(300)
    assert len(h.fake.seen("/a.rss")) == 1 and len(h.fake.seen("/b.rss")) == 4
    assert h.source.status()["feeds"][0]["state"] == FAILING
    h.stop()
    h = Harness()
    h.fake.gone("/a.rss")
    h.start()
    assert h.source.state == FAILING and "every feed is gone" in h.source.last_error
    assert h.source._task.called
    h.stop()


def test_retry_after_honoured():
    """429 and 503 with Retry-After (seconds or a date) are not asked again before then; 503 without it backs off."""
    h = Harness(poll_interval=60)
    h.fake.set_feed("/a.rss", items=[{"title": "x", "guid": "1"}])
    h.fake.script("/a.rss", 429, headers={"Retry-After": "600"})
    h.start()
    assert h.source.state == RATE_LIMITED and h.source.status()["resume_at"] == "2026-01-01T00:10:00.000Z"
    h.turn(599)
    assert len(h.fake.seen("/a.rss")) == 1
    h.turn(1)
    assert len(h.fake.seen("/a.rss")) == 2 and h.source.state == CONNECTED and len(h.take()) == 1
    h.fake.script("/a.rss", 503, headers={"Retry-After": "Thu, 01 Jan 2026 01:00:00 GMT"})
    h.turn(60)
    assert h.source.state == BACKING_OFF
    h.turn(3600 - 660 - 1)
    assert len(h.fake.seen("/a.rss")) == 3
    h.turn(1)
    assert len(h.fake.seen("/a.rss")) == 4
    h.fake.script("/a.rss", 503)
    h.turn(60)
    assert h.source.state == BACKING_OFF and h.source.feeds[0].next_at - h.clock.seconds() > 0
    h.stop()


def test_bad_xml_is_dead_letter_and_polling_goes_on():
    """A truncated or invalid document is a dead letter with its bytes; the feed is polled again later."""
    h = Harness(paths=("/a.rss", "/b.rss"))
    h.fake.set_raw("/a.rss", b"<rss><channel><item><title>trunc")
    h.fake.set_feed("/b.rss", items=[{"title": "fine", "guid": "1"}])
    h.start()
    assert [p.text for p in h.take()] == ["fine"]
    ((_, raw, error, context),) = h.store.letters
    assert raw.startswith(b"<rss>") and error.startswith("bad XML") and context == BASE + "/a.rss"
    assert h.source.state == FAILING and h.source.malformed_count == 1
    h.fake.set_feed("/a.rss", items=[{"title": "repaired", "guid": "1"}])
    h.turn(300)
    assert [p.text for p in h.take()] == ["repaired"] and h.source.state == CONNECTED
    h.stop()


def test_oversized_feed_refused():
    """A document over max_bytes is cut off, kept as a dead letter head, and not parsed."""
    h = Harness(max_bytes=2048)
    h.fake.set_feed("/a.rss", items=[{"title": "x" * 100, "guid": str(i)} for i in range(50)])
    h.start()
    assert h.take() == [] and "larger than 2048" in h.store.letters[0][2]
    h.stop()


def test_bad_dates_fall_back_to_now_and_are_counted():
    """Unreadable and far-future dates are stamped with the time read and counted."""
    h = Harness()
    h.fake.set_feed(
        "/a.rss",
        items=[
            {"title": "bad", "guid": "1", "pubDate": "32/13/2026 25:61"},
            {"title": "future", "guid": "2", "pubDate": "Fri, 01 Jan 2100 00:00:00 GMT"},
            {"title": "good", "guid": "3", "pubDate": "Thu, 01 Jan 2026 00:00:00 GMT"},
        ],
    )
    h.clock.advance(3600)
    h.start()
    posts = {p.text: p for p in h.take()}
    assert posts["bad"].created_at == posts["future"].created_at == START + 3600
    assert posts["good"].created_at == START and h.source.bad_dates == 2
    assert h.source.status()["bad_dates"] == 2
    h.stop()


def test_network_error_backs_off_per_feed():
    """A feed whose server is unreachable backs off on its own; the source reports backing off."""
    from twisted.internet.defer import fail
    from twisted.internet.error import ConnectionRefusedError

    class Refusing:
        calls = 0

        def request(self, *a, **kw):
            Refusing.calls += 1
            return fail(ConnectionRefusedError("127.0.0.1:9"))

    h = Harness(poll_interval=300)
    h.source.http_client = Refusing()
    h.start()
    assert h.source.state == BACKING_OFF and "refused" in h.source.last_error.lower()
    h.turn(80)
    assert Refusing.calls == 2
    h.stop()


def test_html_and_emoji_survive():
    """Markup in titles and descriptions becomes text; emoji and escaped markup stay as written."""
    h = Harness()
    h.fake.set_feed(
        "/a.rss",
        items=[
            {
                "title": "Acme ❤️ <b>users</b>",
                "guid": "1",
                "description": "<p>We &lt;3 you &amp;amp; <script>alert(1)</script> 👍</p>",
                "creator": "Zoë",
            }
        ],
    )
    h.start()
    (p,) = h.take()
    assert p.text == "Acme ❤️ users — We <3 you &amp; alert(1) 👍" and p.author == "Zoë"
    h.stop()


def test_duplicate_items_in_one_document_emitted_once():
    """The same guid twice in a document (a sloppy feed) gives one post; items come oldest first whatever the order."""
    h = Harness()
    h.fake.set_feed(
        "/a.rss",
        items=[
            {"title": "Old", "guid": "1", "pubDate": "Thu, 01 Jan 2026 08:00:00 GMT"},
            {"title": "New", "guid": "2", "pubDate": "Thu, 01 Jan 2026 09:00:00 GMT"},
            {"title": "Old again", "guid": "1", "pubDate": "Thu, 01 Jan 2026 08:00:00 GMT"},
        ],
    )
    h.start()
    posts = h.take()
    assert [p.native_id.rsplit("#", 1)[1] for p in posts] == ["1", "2"]
    assert posts[-1].cursor is not None
    h.stop()
