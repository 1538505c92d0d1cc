"""
A story's posts in the web UI and the API, against a real C{twistd -n
monitor} with stories on: every post JSON carries its story, C{story=}
finds a story's posts (the API, the posts page with a heading naming the
story, the exports), and bad values are 400s naming C{story} and C{order}.
"""

import csv
import io
import json
import time
import urllib.parse

import pytest

from tests.web.conftest import CONFIG, TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
MARK = f"st{time.time_ns()}"
LINK = f"https://news.example/{MARK}/acme-recall"
POSTS = [
    {"text": f"Acme recalls its kettles {LINK}"},
    {"text": f'<script>alert(1)</script> acme kettle recall, see {LINK} "><b>x</b>'},
    {"text": f"{MARK} acme gardening tomatoes in the summer sun"},
]


@pytest.fixture(scope="module")
def hub_config():
    return "[stories]\nenabled = true\n" + CONFIG


def api(hub, path):
    status, _, body = hub.request(path, headers=AUTH)
    return status, json.loads(body)


@pytest.fixture(scope="module")
def stored(hub):
    """The posts above, stored; their API JSON by text."""
    hub.append(*POSTS)
    deadline = time.monotonic() + 30
    while True:
        status, body = api(hub, "/api/v1/posts?" + urllib.parse.urlencode({"q": "acme", "limit": 500}))
        mine = {p["text"]: p for p in body["posts"] if MARK in p["text"]}
        if len(mine) == len(POSTS) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(mine) == len(POSTS), body
    return mine


def test_the_posts_of_a_story(hub, stored):
    """Two posts of one link share a story that story= finds; the unrelated post is in another."""
    first, second, other = (stored[p["text"]] for p in POSTS)
    assert first["story"] and first["story"] == second["story"] != other["story"]
    status, body = api(hub, "/api/v1/posts?story=" + first["story"])
    assert status == 200
    assert sorted(p["text"] for p in body["posts"]) == sorted([first["text"], second["text"]])
    status, body = api(hub, "/api/v1/stories?order=size&limit=200")
    assert status == 200 and body["enabled"] is True
    [story] = [s for s in body["stories"] if s["id"] == first["story"]]
    assert story["size"] == 2
    status, body = api(hub, "/api/v1/stories?order=rising&limit=200")
    assert status == 200 and all(s["growth"]["per_minute"] > 0 for s in body["stories"]), body


def test_the_posts_page_of_a_story_names_it(hub, stored):
    """/posts?story= shows only that story's posts under a heading with its words; the hostile text stays text."""
    sid = stored[POSTS[0]["text"]]["story"]
    opener, _ = hub.login("vi")
    status, _, body = hub.request(f"/posts?story={sid}", opener=opener)
    page = body.decode()
    assert status == 200
    heading = page.split("<h1>", 1)[1].split("</h1>", 1)[0]
    assert "Posts of the story" in heading and ("kettle" in heading or "recall" in heading), heading
    assert f'data-story="{sid}"' in page
    assert "acme gardening tomatoes" not in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # The search form keeps the story, so a search narrows within it.
    assert f'<input type="hidden" name="story" value="{sid}">' in page
    status, _, body = hub.request(f"/posts/export.csv?story={sid}", opener=opener)
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert status == 200 and len(rows) == 2 and {r["story"] for r in rows} == {sid}
    status, _, body = hub.request(f"/posts/export.json?story={sid}", opener=opener)
    assert {p["story"] for p in json.loads(body)["posts"]} == {sid}


@pytest.mark.parametrize("path,parameter", [
    ("/api/v1/posts?story=no%20such%20thing", "story"),
    ("/api/v1/posts?story=" + "s" * 65, "story"),
    ("/api/v1/stories?order=newest", "order"),
])  # fmt: skip
def test_bad_story_parameters_are_named(hub, path, parameter):
    """A story id that cannot be one, an unknown order: a 400 naming the parameter."""
    status, body = api(hub, path)
    assert (status, body["parameter"]) == (400, parameter), body


def test_a_bad_story_on_the_posts_page_is_named(hub):
    """The posts page refuses a bad story id with a 400 that says which field."""
    opener, _ = hub.login("vi")
    status, _, body = hub.request("/posts?story=%3Cb%3E", opener=opener)
    assert status == 400
    assert 'id="error-story"' in body.decode() and "<b>" not in body.decode().split('id="error-story"')[1][:200]
