"""
Corrections through the JSON API (treq's StubTreq over a real Site in
memory, a real SQLite store): PUT merges, GET reads, DELETE undoes, the
list pages and exports; bad fields are 400s that name them; who and when
are stored.
"""

import csv
import io
import json
from urllib.parse import quote

import pytest
from treq.testing import StubTreq
from twisted.internet.task import Clock

from monitor.learn.feedback import Feedback
from monitor.model import Analysis, Post
from monitor.store.sqlite_learning import SQLiteLearning
from monitor.web.api import Api, TokenAuth
from tests.alerts.helpers import T0, SyncStore

TOKEN = "t0ken"
BASE = "http://monitor.test"
#: A Bluesky-like id: colons and slashes, which the address must carry encoded.
ODD = "bluesky:at://did:plc:abc/app.bsky.feed.post/3k2"


def _post(native_id, text, network="x"):
    return Post(source="s", network=network, native_id=native_id, text=text, author="a", created_at=T0,
                analysis=Analysis(0.2, 0.1, 0.9, 0.0, "positive", ()))  # fmt: skip


class Client:
    def __init__(self):
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = SyncStore()
        self.store.add_posts(
            [
                _post("1", "Acme charged me twice"),
                _post("2", '=HYPERLINK("x")'),
                _post("at://did:plc:abc/app.bsky.feed.post/3k2", "lost my bag", network="bluesky"),
            ]
        )
        self.feedback = Feedback(SQLiteLearning(self.store), self.clock)
        self.changes = []
        self.feedback.listeners.append(lambda: self.changes.append(1))
        self.stub = StubTreq(Api(TokenAuth([TOKEN]), store=self.store, feedback=self.feedback).resource())

    def call(self, method, path, body=None, token=TOKEN, raw=False):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = json.dumps(body).encode() if body is not None else None
        d = self.stub.request(method, BASE + path, headers=headers, data=data)
        self.stub.flush()
        out = []
        d.addBoth(out.append)
        response = out[0]
        content = []
        response.content().addBoth(content.append)
        self.stub.flush()
        if raw:
            return response.code, content[0], response.headers
        return response.code, json.loads(content[0])


@pytest.fixture
def api():
    return Client()


def url(uid):
    return "/api/v1/posts/" + quote(uid, safe="") + "/feedback"


def test_put_get_merge_and_undo(api):
    code, body = api.call("PUT", url("x:1"), {"sentiment": "negative", "labels": {"complaint": True}})
    assert code == 200, body
    fb = body["feedback"]
    assert fb["sentiment"] == "negative" and fb["labels"] == {"complaint": True}
    assert fb["by"] == "api" and fb["created_at"] == fb["updated_at"] and fb["text"] == "Acme charged me twice"
    api.clock.advance(60)
    # A second correction merges: a new label, the sentiment kept.
    code, body = api.call("PUT", url("x:1"), {"labels": {"billing": True, "question": False}})
    assert body["feedback"]["labels"] == {"billing": True, "complaint": True, "question": False}
    assert (
        body["feedback"]["sentiment"] == "negative" and body["feedback"]["updated_at"] != body["feedback"]["created_at"]
    )
    # null forgets one label's word.
    code, body = api.call("PUT", url("x:1"), {"labels": {"question": None}})
    assert body["feedback"]["labels"] == {"billing": True, "complaint": True}
    assert api.call("GET", url("x:1"))[1]["feedback"]["labels"] == {"billing": True, "complaint": True}
    assert api.store.rows("SELECT by, updated_at - created_at FROM post_feedback") == [("api", 60.0)]
    assert len(api.changes) == 3
    # Undo.
    assert api.call("DELETE", url("x:1")) == (200, {"deleted": "x:1"})
    assert api.call("GET", url("x:1"))[0] == 404
    assert api.call("DELETE", url("x:1"))[0] == 404
    assert api.store.rows("SELECT count(*) FROM post_feedback") == [(0,)]


def test_a_percent_encoded_id_with_slashes(api):
    code, body = api.call("PUT", url(ODD), {"sentiment": "negative"})
    assert code == 200 and body["feedback"]["post_id"] == ODD and body["feedback"]["text"] == "lost my bag"
    assert api.call("GET", url(ODD))[1]["feedback"]["sentiment"] == "negative"


@pytest.mark.parametrize(
    "body, parameter",
    [
        ({"sentiment": "angry"}, "sentiment"),
        ({"sentiment": 1}, "sentiment"),
        ({"labels": ["complaint"]}, "labels"),
        ({"labels": {"Complaint": True}}, "labels.Complaint"),
        ({"labels": {"complaint": "yes"}}, "labels.complaint"),
        ({"labels": {f"l{i}": True for i in range(21)}}, "labels"),
        ({"sentimnet": "negative"}, "sentimnet"),
        ({}, "body"),
        ([1], "body"),
    ],
)
def test_bad_fields_are_named(api, body, parameter):
    code, answer = api.call("PUT", url("x:1"), body)
    assert code == 400 and answer["parameter"] == parameter, answer
    assert api.store.rows("SELECT count(*) FROM post_feedback") == [(0,)]


def test_unknown_post_and_no_token(api):
    assert api.call("PUT", url("x:404"), {"sentiment": "neutral"})[0] == 404
    assert api.call("PUT", url("x:1"), {"sentiment": "neutral"}, token=None)[0] == 401
    assert api.call("GET", "/api/v1/feedback", token="wrong")[0] == 401


def test_list_pages_and_exports(api):
    for i, uid in enumerate(["x:1", "x:2", ODD]):
        api.clock.advance(1)
        api.call("PUT", url(uid), {"sentiment": "negative", "labels": {"complaint": i != 1}})
    code, body = api.call("GET", "/api/v1/feedback?limit=2")
    assert code == 200 and [f["post_id"] for f in body["feedback"]] == [ODD, "x:2"]
    code, rest = api.call("GET", "/api/v1/feedback?limit=2&cursor=" + body["next"])
    assert [f["post_id"] for f in rest["feedback"]] == ["x:1"] and rest["next"] is None
    assert api.call("GET", "/api/v1/feedback?cursor=zz")[1]["parameter"] == "cursor"
    assert api.call("GET", "/api/v1/feedback?format=xml")[1]["parameter"] == "format"
    assert [f["post_id"] for f in api.call("GET", "/api/v1/feedback?by=api&label=complaint")[1]["feedback"]] == [
        ODD,
        "x:2",
        "x:1",
    ]
    code, raw, headers = api.call("GET", "/api/v1/feedback?format=csv", raw=True)
    assert code == 200 and headers.getRawHeaders("content-type")[0].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(raw.decode())))
    assert rows[0][:4] == ["post_id", "sentiment", "labels_yes", "labels_no"]
    by_id = {r[0]: r for r in rows[1:]}
    assert by_id["x:1"][2] == "complaint" and by_id["x:2"][3] == "complaint"
    # Hostile text cannot become a spreadsheet formula.
    assert by_id["x:2"][7].startswith("'=")
