"""
The live channel's queueing, filtering and coalescing, driven by a Clock:
no sockets, no sleeping.
"""

import json

import pytest
from twisted.internet.task import Clock

from monitor.model import Analysis, Post
from monitor.bus import STATUS, EventBus
from monitor.status import StatusService
from monitor.web.push import FRAME_BYTES, Filters, PushHub, PushProtocol, post_json
from monitor.web.users import Session


class Recorder(PushProtocol):
    """A client whose frames are recorded instead of written to a socket."""

    def __init__(self, hub):
        super().__init__()
        self.factory = hub.factory
        self.session = Session("key-" + str(id(self)), 1, "ann", "viewer", "csrf")
        self.frames = []
        self.dropped_connection = None

    def sendMessage(self, payload, isBinary=False):
        self.frames.append(json.loads(payload))

    def dropConnection(self, abort=False):
        self.dropped_connection = abort
        self.factory.push.remove(self)

    def sendClose(self, code=None, reason=None):
        self.closed_with = code

    def sendCloseFrame(self, code=None, reasonUtf8=None, isReply=False):
        self.closed_with = code

    def envelopes(self):
        return [env for frame in self.frames for env in frame]


def make_post(n, topic="Acme", sentiment="negative", labels=("complaint",), source="inbox", lat=None):
    post = Post(
        source=source,
        network=source,
        native_id=str(n),
        text=f"post {n}",
        author="a",
        created_at=1.7e9 + n,
        lat=lat,
        lon=None if lat is None else 2.0,
    )
    post.topics = (topic,)
    post.analysis = Analysis(-0.5, 0.0, 0.5, 0.5, sentiment, tuple(labels))
    return post


class Timer:
    """What a flush costs, as the hub measures it: set by the test."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def hub():
    return PushHub(Clock(), queue_limit=5, interval=0.25, stall_timeout=30, timer=Timer())


def connect(hub, **filters):
    client = Recorder(hub)
    hub.add(client)
    client.filters = Filters(**filters)
    return client


def test_posts_reach_only_matching_subscribers(hub):
    """A post goes to clients whose topic, sentiment, label and source filters accept it."""
    everyone = connect(hub, kinds=["post"])
    acme = connect(hub, kinds=["post"], topics=["Acme"])
    globex = connect(hub, kinds=["post"], topics=["Globex"])
    positive = connect(hub, kinds=["post"], sentiments=["positive"])
    crisis = connect(hub, kinds=["post"], labels=["crisis"])
    other_source = connect(hub, kinds=["post"], sources=["elsewhere"])
    nothing = connect(hub)
    hub.posts_stored([make_post(1)])
    hub.reactor.advance(0.25)
    assert [e["type"] for e in everyone.envelopes()] == ["hello", "post"]
    assert [e["type"] for e in acme.envelopes()] == ["hello", "post"]
    for client in (globex, positive, crisis, other_source, nothing):
        assert [e["type"] for e in client.envelopes()] == ["hello"]


def test_geo_filter_wants_coordinates(hub):
    """A client asking for geo gets only posts with a latitude and longitude."""
    client = connect(hub, kinds=["post"], geo=True)
    hub.posts_stored([make_post(1), make_post(2, lat=48.0)])
    hub.reactor.advance(0.25)
    posts = [e["data"] for e in client.envelopes() if e["type"] == "post"]
    assert [p["native_id"] for p in posts] == ["2"]


def test_burst_is_coalesced_into_one_frame(hub):
    """Many posts within one interval arrive as one frame, not one message each."""
    client = connect(hub, kinds=["post"])
    hub.reactor.advance(0.25)
    client.frames.clear()
    hub.queue_limit = 1000
    hub.posts_stored([make_post(n) for n in range(100)])
    assert client.frames == []
    hub.reactor.advance(0.25)
    assert len(client.frames) == 1 and len(client.frames[0]) == 100


def test_frame_size_is_bounded(hub):
    """A frame holds at most FRAME_BYTES of envelopes; the rest follows at once in further frames."""
    hub.queue_limit = 10000
    client = connect(hub, kinds=["post"])
    hub.reactor.advance(0.25)
    client.frames.clear()
    posts = [make_post(n) for n in range(600)]
    for p in posts:
        p.text = "x" * 500
    hub.posts_stored(posts)
    hub.reactor.advance(0)
    sizes = [len(json.dumps(f, separators=(",", ":"))) for f in client.frames]
    assert len(client.frames) > 1 and max(sizes) <= FRAME_BYTES
    assert sum(len(f) for f in client.frames) == 600


def test_idle_hub_sends_a_post_at_once(hub):
    """When sending has been cheap, a stored post leaves in the same reactor turn: no frame budget to wait for."""
    client = connect(hub, kinds=["post"])
    hub.reactor.advance(0)
    client.frames.clear()
    hub.posts_stored([make_post(1)])
    hub.reactor.advance(0)
    assert [e["data"]["native_id"] for e in client.envelopes()] == ["1"]


def test_a_reading_client_gets_every_post_of_a_flood(hub):
    """A client whose transport keeps up is never given drops, however many posts arrive at once."""
    client = connect(hub, kinds=["post"])
    hub.reactor.advance(0)
    client.frames.clear()
    for start in range(0, 3000, 500):
        hub.posts_stored([make_post(n) for n in range(start, start + 500)])
    hub.reactor.advance(0)
    ids = [int(e["data"]["native_id"]) for e in client.envelopes()]
    assert ids == list(range(3000))
    assert hub.dropped_total == 0
    assert max(len(client.pending), 0) == 0


def test_costly_sending_coalesces_frames(hub):
    """After a flush that cost time, the next waits (BUSY_RATIO times that, at most interval) and carries more."""
    timer = hub._timer
    cost = [0.01]  # each frame costs 10 ms of the reactor
    client = connect(hub, kinds=["post"])

    def slow_send(payload, isBinary=False, _send=client.sendMessage):
        timer.now += cost[0]
        _send(payload, isBinary)

    client.sendMessage = slow_send
    hub.reactor.advance(0)  # the hello frame: 10 ms
    client.frames.clear()
    for n in range(1, 5):
        hub.posts_stored([make_post(n)])
        assert client.frames == []
        hub.reactor.advance(0.01)
    assert [[e["data"]["native_id"] for e in f] for f in client.frames] == [["1", "2", "3", "4"]]
    cost[0] = 100.0  # a flush far costlier than interval
    hub.posts_stored([make_post(5)])
    hub.reactor.advance(0.04)
    assert len(client.frames) == 2
    hub.posts_stored([make_post(6)])
    hub.reactor.advance(0.249)
    assert len(client.frames) == 2
    hub.reactor.advance(0.001)
    assert len(client.frames) == 3  # never later than interval


def test_client_paused_mid_flush_gets_the_rest_when_resumed(hub):
    """A transport that fills while frames are written pauses the client; the rest goes out when it drains."""
    hub.queue_limit = 10000
    client = connect(hub, kinds=["post"])
    hub.reactor.advance(0)
    client.frames.clear()

    def filling(payload, isBinary=False, _send=client.sendMessage):
        _send(payload, isBinary)
        client.pauseProducing()  # what Twisted's write() does past its buffer size

    client.sendMessage = filling
    posts = [make_post(n) for n in range(400)]
    for p in posts:
        p.text = "y" * 500
    hub.posts_stored(posts)
    hub.reactor.advance(0)
    assert len(client.frames) == 1 and client.pending
    while client.pending:
        client.resumeProducing()
        hub.reactor.advance(0)
    assert [int(e["data"]["native_id"]) for e in client.envelopes()] == list(range(400))
    assert hub.dropped_total == 0


def test_slow_client_loses_oldest_and_is_told(hub):
    """A client that cannot take more keeps only the newest messages and is told how many it lost."""
    client = connect(hub, kinds=["post"])
    hub.reactor.advance(0.25)
    client.frames.clear()
    client.pauseProducing()
    hub.posts_stored([make_post(n) for n in range(12)])
    hub.reactor.advance(1.0)
    assert client.frames == []
    assert len(client.pending) == 5 and hub.dropped_total == 7
    client.resumeProducing()
    hub.reactor.advance(0.25)
    frame = client.frames[0]
    assert frame[0] == {"type": "lost", "data": {"count": 7, "total": 7}}
    assert [e["data"]["native_id"] for e in frame[1:]] == ["7", "8", "9", "10", "11"]


def test_stalled_client_is_disconnected(hub):
    """A client paused for longer than stall_timeout is dropped; a resumed one is not."""
    stuck = connect(hub, kinds=["post"])
    recovers = connect(hub, kinds=["post"])
    stuck.pauseProducing()
    stuck.pauseProducing()  # Twisted may say it twice
    recovers.pauseProducing()
    hub.reactor.advance(10)
    recovers.resumeProducing()
    hub.reactor.advance(25)
    assert stuck.dropped_connection is True
    assert recovers.dropped_connection is None
    assert stuck not in hub.clients and recovers in hub.clients


def test_paused_client_does_not_delay_others(hub):
    """While one client is blocked, the others keep getting frames every interval."""
    blocked = connect(hub, kinds=["post"])
    fine = connect(hub, kinds=["post"])
    blocked.pauseProducing()
    for n in range(4):
        hub.posts_stored([make_post(n)])
        hub.reactor.advance(0.25)
    assert sum(1 for e in fine.envelopes() if e["type"] == "post") == 4
    assert blocked.frames == []


def test_snapshots_keep_only_the_newest(hub):
    """Pending stats and source messages are replaced by newer ones, not queued."""
    client = connect(hub, kinds=["source", "stats"])
    client.pauseProducing()
    for n in range(10):
        hub.publish("source", {"n": n})
        hub.publish("stats", {"n": n})
    client.resumeProducing()
    hub.reactor.advance(0.25)
    kinds = [(e["type"], e["data"].get("n")) for e in client.envelopes() if e["type"] in ("source", "stats")]
    assert sorted(kinds) == [("source", 9), ("stats", 9)]
    assert hub.dropped_total == 0


def test_publish_alerts_and_rejects_unknown_kinds(hub):
    """publish('alert') reaches subscribers (topic-filtered when it names a topic); unknown kinds are refused."""
    acme = connect(hub, kinds=["alert"], topics=["Acme"])
    anyone = connect(hub, kinds=["alert"])
    assert hub.publish("alert", {"topic": "Globex", "rule": "spike"}) == 1
    assert hub.publish("alert", {"rule": "no topic"}) == 2
    hub.reactor.advance(0.25)
    assert [e["data"]["rule"] for e in acme.envelopes() if e["type"] == "alert"] == ["no topic"]
    assert [e["data"]["rule"] for e in anyone.envelopes() if e["type"] == "alert"] == ["spike", "no topic"]
    with pytest.raises(ValueError):
        hub.publish("gossip", {})


def test_subscribe_message_is_checked(hub):
    """A subscribe message sets the filters; a bad one gets an error envelope and changes nothing."""
    client = connect(hub)
    client.onMessage(json.dumps({"type": "subscribe", "kinds": ["post"], "topics": ["Acme"]}).encode(), False)
    assert client.filters.topics == {"Acme"}
    client.onMessage(json.dumps({"type": "subscribe", "sentiments": ["furious"]}).encode(), False)
    client.onMessage(b"not json", False)
    client.onMessage(b"\x00", True)
    assert client.filters.topics == {"Acme"}
    hub.reactor.advance(0.25)
    types = [e["type"] for e in client.envelopes()]
    assert types == ["hello", "subscribed", "error", "error", "error"]
    assert "sentiments" in client.envelopes()[2]["data"]["message"]


def test_stats_and_source_status_are_sent_periodically():
    """Every status interval, clients get the collectors' states and (after posts) the counts."""

    class Source:
        name = "inbox"

        def status(self):
            return {"name": "inbox", "state": "idle"}

    class Nodes:
        def status(self):
            return {"nodes": [{"name": "n1", "state": "connected"}]}

    clock = Clock()
    bus = EventBus()
    status = StatusService(bus, clock, sources=[Source()], nodes=Nodes(), interval=5)
    hub = PushHub(clock, interval=0.25)
    bus.subscribe(STATUS, hub.relay_status)
    status.startService()
    hub.startService()
    client = connect(hub, kinds=["stats", "source"])
    hub.posts_stored([make_post(1), make_post(2, sentiment="positive", labels=())])
    clock.advance(5)
    clock.advance(0.25)
    by_type = {e["type"]: e["data"] for e in client.envelopes()}
    assert by_type["stats"]["posts"] == 2
    assert by_type["stats"]["sentiment"] == {"negative": 1, "positive": 1}
    assert by_type["stats"]["topics"] == {"Acme": 2}
    assert by_type["source"]["sources"] == [{"name": "inbox", "state": "idle"}]
    assert by_type["source"]["nodes"]["nodes"][0]["name"] == "n1"
    hub.stopService()
    status.stopService()


def test_broken_nodes_status_is_ignored():
    """A nodes object whose status() raises does not break the source message."""

    class Broken:
        def status(self):
            raise RuntimeError("boom")

    status = StatusService(EventBus(), Clock(), nodes=Broken())
    assert status.snapshot()["nodes"] is None


def test_post_json_has_the_api_shape():
    """A pushed post has the same fields as a post from GET /api/v1/posts."""
    data = post_json(make_post(3))
    assert data["id"] == "inbox:3"
    assert data["sentiment"]["label"] == "negative" and data["labels"] == ["complaint"]
    assert data["created_at"].endswith("Z")


@pytest.mark.parametrize(
    "origin,host,secure,ok",
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", False, True),
        ("https://monitor.example", "monitor.example", False, True),
        ("http://evil.example:8080", "127.0.0.1:8080", False, False),
        ("http://127.0.0.1:8081", "127.0.0.1:8080", False, False),
        ("null", "127.0.0.1:8080", False, False),
        (None, "127.0.0.1:8080", False, False),
        ("http://127.0.0.1:8080", None, False, False),
        ("https://monitor.example:443", "monitor.example", True, True),
    ],
)
def test_same_origin(origin, host, secure, ok):
    """The Origin of a handshake must name the host and port the request was sent to."""
    assert PushHub.same_origin(origin, host, secure) is ok


def metric(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels) or 0


@pytest.fixture
def counted():
    from monitor.metrics import Metrics

    metrics = Metrics()
    return PushHub(
        Clock(),
        metrics=metrics,
        queue_limit=5,
        interval=0.25,
        stall_timeout=30,
        message_burst=100,
        message_rate=1.0,
    ), metrics


def test_replies_count_against_the_client_bound(counted):
    """Replies to a client's own messages are queued within its bound, like posts: a paused client cannot grow them."""
    hub, metrics = counted
    client = connect(hub)
    client.pauseProducing()
    subscribe = json.dumps({"type": "subscribe", "topics": ["x" * 150] * 50}).encode()
    for _ in range(60):
        client.onMessage(subscribe, False)
        assert len(client.pending) <= hub.queue_limit
    assert hub.dropped_total == 56  # hello + 60 replies, 5 kept
    client.resumeProducing()
    hub.reactor.advance(0.25)
    assert client.envelopes()[0] == {"type": "lost", "data": {"count": 56, "total": 56}}


def test_too_frequent_messages_end_the_connection(counted):
    """After its burst a client may send message_rate messages per second; faster ends the connection (1008), counted."""
    hub, metrics = counted
    client = connect(hub)
    subscribe = json.dumps({"type": "subscribe"}).encode()
    for _ in range(100):
        client.onMessage(subscribe, False)
    hub.reactor.advance(3.0)
    for _ in range(3):
        client.onMessage(subscribe, False)
    assert client in hub.clients and getattr(client, "closed_with", None) is None
    client.onMessage(subscribe, False)
    assert client.closed_with == 1008 and client not in hub.clients
    assert metric(metrics, "monitor_ws_disconnects_total", reason="flood") == 1
    client.onMessage(subscribe, False)  # arrives while closing: ignored
    assert metric(metrics, "monitor_ws_disconnects_total", reason="flood") == 1
    assert not client.pending


def test_oversized_message_ends_the_connection(counted):
    """A message longer than max_message ends the connection (1009), counted, and gets no reply."""
    hub, metrics = counted
    client = connect(hub)
    hub.reactor.advance(0.25)
    client.frames.clear()
    client.onMessage(json.dumps({"type": "subscribe", "topics": ["x" * 200] * 100}).encode(), False)
    assert client.closed_with == 1009 and client not in hub.clients
    assert metric(metrics, "monitor_ws_disconnects_total", reason="oversized") == 1
    hub.reactor.advance(0.25)
    assert client.frames == []
