"""
The story parts of the pages through a real Klein resource and HTTP in
memory (treq's StubTreq), over a real story clusterer fed posts on a
Clock: the dashboard's Stories panel (rising first, keywords, size,
sentiment bar, sparkline, sources, a link to the story's posts), its empty
and turned-off states, hostile words escaped, and the JSON the map and the
live feed name stories with.
"""

import json
import re
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest
from treq.testing import StubTreq
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from monitor.config import STORIES_FIELDS
from monitor.model import Analysis, Post
from monitor.store.sqlite_learning import SQLiteLearning
from monitor.store.sqlite_pages import PageQueries
from monitor.stories import StoryClusterer, StoryService
from monitor.web.pages.base import StoryView
from monitor.web.ui import WebUI
from tests.web.test_alert_pages import Browser as _Browser
from tests.web.test_alert_pages import FakeUsers

T0 = 1_800_000_000.0


class Topics:
    def __init__(self, names):
        self.topics = [SimpleNamespace(name=n) for n in names]

    def get(self, name):
        return next((t for t in self.topics if t.name == name), None)


class Store(PageQueries):
    """Only what the dashboard's first page asks of a store: no posts yet."""

    def run_read(self, run, *args):
        class Cursor:
            def execute(self, *a):
                pass

            def fetchone(self):
                return (None,)

            def fetchall(self):
                return []

        return succeed(run(Cursor(), *args))


class Hub:
    def __init__(self, clock, enabled=True):
        self.config = SimpleNamespace(stories={**{k: f.default for k, f in STORIES_FIELDS.items()}, "enabled": enabled})
        self.stories = StoryService(StoryClusterer(), clock)
        self.topics = Topics(["Acme", "Globex"])
        self.store = Store()
        self.learning = SQLiteLearning(self.store)
        self.learner = SimpleNamespace(active={})
        self.sources = []


class Pages(_Browser):
    def __init__(self, hub, clock):
        self.clock = clock
        ui = WebUI(
            FakeUsers(),
            clock,
            store=hub.store,
            topics=hub.topics,
            sources=hub.sources,
            stories=StoryView(hub.stories.clusterer, hub.config.stories["enabled"]),
            learner=hub.learner,
            learning=hub.learning,
        )
        self.stub = StubTreq(ui.resource())


n = 0


def post(text, t, source="bluesky", sentiment="neutral", topic="Acme", lat=None, lon=None):
    global n
    n += 1
    compound = {"negative": -0.6, "positive": 0.6}.get(sentiment, 0.0)
    return Post(source=source, network=source, native_id=str(n), text=text, author=f"a{n}", created_at=t,
                topics=(topic,), lat=lat, lon=lon, analysis=Analysis(compound, 0.0, 1.0, 0.0, sentiment, ()))  # fmt: skip


@pytest.fixture
def clock():
    c = Clock()
    c.advance(T0)
    return c


def feed(hub, posts):
    for p in posts:
        hub.stories.clusterer.add(p)


def fill(hub, clock):
    """
    Two stories: a steady one (a quake, 9 posts over the last hour) and a
    rising one (a final, 6 posts in the last 3 minutes), and a lone post.
    """
    quake = [post(f"acme earthquake tokyo buildings shaking {i}", T0 - 3500 + i * 400, sentiment="negative",
                  source="bluesky" if i % 2 else "mastodon") for i in range(9)]  # fmt: skip
    final = [post(f"acme football final goal penalty stadium {i}", T0 - 170 + i * 30,
                  sentiment="positive" if i < 4 else "neutral") for i in range(6)]  # fmt: skip
    feed(hub, quake + final + [post("acme completely unrelated gardening tips", T0 - 10)])
    return quake, final


class Stories(HTMLParser):
    """The panel's stories: id, terms, link, size text, sparkline points, bar rects."""

    def __init__(self):
        super().__init__()
        self.stories, self._in, self._text = [], None, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "li" and "story" in (a.get("class") or "").split():
            self.stories.append({"id": a["data-story-id"], "terms": [], "rects": {}, "chips": [],
                                 "rising": "rising" in a["class"].split()})  # fmt: skip
        if not self.stories:
            return
        s = self.stories[-1]
        if tag == "a" and a.get("class") == "story-terms":
            s["href"] = a["href"]
        if tag == "span" and a.get("class") == "term":
            self._in, self._text = "term", []
        if tag == "span" and a.get("class") == "story-size":
            self._in, self._text = "size", []
        if tag == "polyline":
            s["spark"] = [tuple(map(float, p.split(","))) for p in a["points"].split()]
        if tag == "rect":
            s["rects"][a["class"]] = float(a["width"])
        if tag == "span" and a.get("class") == "chip source":
            s["chips"].append(a["title"])

    def handle_data(self, data):
        if self._in:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "span" and self._in:
            s = self.stories[-1]
            text = "".join(self._text).strip()
            if self._in == "term":
                s["terms"].append(text)
            else:
                s["size"] = text
            self._in = None


def panel(body):
    parser = Stories()
    parser.feed(body)
    return parser.stories


def test_dashboard_panel_lists_rising_stories_with_their_figures(clock):
    """The rising story comes first, then the largest; each has its keywords, size, a 60-point sparkline, a sentiment bar, its sources and a link to its posts."""
    hub = Hub(clock)
    quake, final = fill(hub, clock)
    web = Pages(hub, clock)
    status, body, _ = web.get("/dashboard?range=24h", role="viewer")
    assert status == 200
    shown = panel(body)
    assert len(shown) == 2, shown  # the lone post is no story
    rising, steady = shown
    assert "football" in rising["terms"] and "earthquake" in steady["terms"], shown
    # The final is rising; the quake, steady all hour, is not, but fills the panel as the next largest.
    assert rising["rising"] and not steady["rising"]
    assert body.count('class="rising-badge"') == 1
    assert rising["size"] == "6 posts" and steady["size"] == "9 posts"
    assert rising["href"] == f"/posts?story={rising['id']}"
    # 60 minutes, oldest first: the final's posts are all in the last three.
    points = rising["spark"]
    assert len(points) == 60
    ys = [y for _, y in points]
    assert ys[:56] == [ys[0]] * 56 and min(ys[-3:]) < ys[0]
    # Positive 4 of 6, neutral 2: the bar's widths in percent.
    assert rising["rects"] == pytest.approx({"positive": 66.67, "neutral": 33.33}, abs=0.01)
    assert steady["rects"] == {"negative": 100.0}
    assert steady["chips"] == ["5 from mastodon", "4 from bluesky"]
    assert 'id="stories-empty"' not in body and 'id="stories-disabled"' not in body


def test_panel_refresh_is_the_same_panel_for_a_topic_and_range(clock):
    """/ui/stories serves the panel alone; a topic without stories says so, a bad range is a 400 naming it."""
    hub = Hub(clock)
    fill(hub, clock)
    web = Pages(hub, clock)
    status, body, _ = web.get("/ui/stories?range=1h", role="viewer")
    assert status == 200 and body.lstrip().startswith("<section") and len(panel(body)) == 2
    # The quake's oldest posts are older than 15 minutes, its newest not.
    status, body, _ = web.get("/ui/stories?range=15m", role="viewer")
    assert [s["size"] for s in panel(body)] == ["6 posts", "9 posts"]
    status, body, _ = web.get("/ui/stories?topic=Globex", role="viewer")
    assert status == 200 and panel(body) == []
    assert "No stories yet about Globex" in body and "share words or a link" in body
    status, body, _ = web.get("/ui/stories?range=2y", role="viewer")
    assert status == 400 and json.loads(body)["parameter"] == "range"
    status, body, _ = web.get("/ui/stories?story=x", role="viewer")
    assert status == 400 and json.loads(body)["parameter"] == "story"


def test_turned_off_stories_say_which_key_turns_them_on(clock):
    """With [stories] enabled = false the panel names the key instead of showing an empty list."""
    hub = Hub(clock, enabled=False)
    web = Pages(hub, clock)
    status, body, _ = web.get("/dashboard", role="viewer")
    assert status == 200
    message = re.search(r'<p class="empty-state" id="stories-disabled">(.*?)</p>', body, re.S).group(1)
    assert "<code>enabled = true</code>" in message and "<code>[stories]</code>" in message
    status, body, _ = web.get("/ui/stories.json", role="viewer")
    assert json.loads(body) == {"enabled": False, "stories": []}


def test_hostile_story_words_are_escaped(clock):
    """Words and sample text from posts are text in the panel, never markup."""
    hub = Hub(clock)
    hostile = [post(f'acme <script>alert(1)</script> "quoted" <img src=x onerror=alert(2)> sneaky{i % 2}', T0 - 60 + i)
               for i in range(4)]  # fmt: skip
    feed(hub, hostile)
    web = Pages(hub, clock)
    _, body, _ = web.get("/ui/stories", role="viewer")
    assert "<script>" not in body and "<img" not in body
    assert "&lt;img src=x onerror=alert(2)&gt;" in body  # the sample post, as text
    (story,) = panel(body)
    assert story["terms"], story


def test_stories_json_names_stories_by_id_or_size(clock):
    """The map and the live feed ask for stories by id (unknown ones left out) or the largest first."""
    hub = Hub(clock)
    quake, final = fill(hub, clock)
    web = Pages(hub, clock)
    status, body, _ = web.get("/ui/stories.json", role="viewer")
    stories = json.loads(body)["stories"]
    assert [s["size"] for s in stories] == [9, 6]
    assert set(stories[0]) == {"id", "terms", "size", "name"} and "earthquake" in stories[0]["terms"]
    assert stories[0]["name"] == " · ".join(stories[0]["terms"][:4])
    wanted = stories[1]["id"]
    _, body, _ = web.get(f"/ui/stories.json?ids={wanted},nosuch", role="viewer")
    assert [s["id"] for s in json.loads(body)["stories"]] == [wanted]
    _, body, _ = web.get("/ui/stories.json?order=rising&limit=1", role="viewer")
    assert [s["id"] for s in json.loads(body)["stories"]] == [wanted]
    status, body, _ = web.get("/ui/stories.json?limit=0", role="viewer")
    assert status == 400 and json.loads(body)["parameter"] == "limit"
    status, body, _ = web.get("/ui/stories.json?ids=s1,%3Cb%3E", role="viewer")
    assert status == 400 and json.loads(body)["parameter"] == "ids"
