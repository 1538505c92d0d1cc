"""
What every L{INotifier} promises, for every channel kind built from its
C{[[channels]]} table as the hub builds it (L{make_notifier}), and for the
scripted double of the alert tests, each against a local receiver of the
real wire format: the fake Slack, the fake Standard Webhooks receiver, a
real Twisted ESMTP server with STARTTLS and AUTH, the hub's event bus.

One attempt, one outcome: a delivery is C{sent} and reaches the receiver
once, naming the incident; a problem the receiver may get over is
C{retry} (with the receiver's Retry-After when it gives one); a
notification the receiver refuses for good is C{failed}; a channel the
receiver refuses is C{disabled}; the live channel with nobody listening is
C{skipped}.  Problems are outcomes, never errors, also when nothing
listens; an attempt that hangs can be cancelled and lets go of its
connection.
"""

from __future__ import annotations

import email
import json
import socket

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface.verify import verifyObject

from monitor.alerts.engine import make_notifier
from monitor.alerts.notifiers import DISABLE, FAILED, RETRY, SENT, SKIPPED, Delivery
from monitor.alerts.notifiers.http import HTTPClient
from monitor.bus import ALERT, EventBus
from monitor.interfaces import INotifier
from tests.alerts.helpers import ScriptedNotifier, config
from tests.alerts.test_notifiers import SECRET, SLACK, note, smtp_server  # noqa: F401  (a fixture)
from tests.fakes.slack import FakeSlack
from tests.fakes.webhook import FakeWebhookReceiver

WAIT = 10  # seconds one attempt may take
OUTCOMES = {SENT, RETRY, FAILED, DISABLE, SKIPPED}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def channel(table):
    """The checked channel table, as the hub reads it from a file."""
    (spec,) = [c for c in config(channels=[table]).channels if c["name"] == table["name"]]
    return spec


class Hanging(Resource):
    """An HTTP receiver that takes a request and never answers; records when its connection goes."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.gone = Deferred()

    def render_POST(self, request):
        request.notifyFinish().addBoth(lambda _: self.gone.called or self.gone.callback(None))
        return NOT_DONE_YET


class Silent(Protocol):
    """A TCP server that accepts and never says a word (an SMTP server that hangs)."""

    def connectionLost(self, reason):
        if not self.factory.gone.called:
            self.factory.gone.callback(None)


class Kind:
    """One notifier kind and its receiver: a notifier made to meet an answer, and what the receiver got."""

    #: The outcomes this kind's receivers can give, each made with C{answer(outcome)}.
    outcomes = ()

    def __init__(self, reactor, http, request):
        self.reactor = reactor
        self.http = http
        self.request = request
        self.closers = []

    def listen(self, resource):
        port = self.reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
        self.closers.append(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}"

    def close(self):
        for close in self.closers:
            pytest_twisted.blockon(close())


class SlackKind(Kind):
    kind = "slack"
    outcomes = (SENT, RETRY, "retry-after", FAILED, DISABLE)

    def notifier(self, outcome=SENT):
        self.fake = FakeSlack()
        base = self.listen(self.fake)
        answer = {RETRY: [500], "retry-after": [(429, {"Retry-After": "7"})], FAILED: [(400, {}, b"invalid_payload")],
                  DISABLE: [410]}.get(outcome, [])  # fmt: skip
        self.fake.script(SLACK, answer)
        return make_notifier(channel({"name": "ops", "kind": "slack", "url": base + SLACK}), EventBus(), self.http,
                             self.reactor)  # fmt: skip

    def at(self, url):
        return make_notifier(channel({"name": "ops", "kind": "slack", "url": url + SLACK}), EventBus(), self.http,
                             self.reactor)  # fmt: skip

    def received(self):
        return [json.dumps(m) for m in self.fake.messages[SLACK]]


class WebhookKind(Kind):
    kind = "webhook"
    outcomes = (SENT, RETRY, "retry-after", FAILED, DISABLE)

    def notifier(self, outcome=SENT):
        self.fake = FakeWebhookReceiver(SECRET, self.reactor)
        base = self.listen(self.fake)
        answer = {RETRY: [503], "retry-after": [(429, {"Retry-After": "7"})], FAILED: [422], DISABLE: [404]}.get(
            outcome, []
        )
        self.fake.script(answer)
        return self.at(base)

    def at(self, url):
        return make_notifier(channel({"name": "ops", "kind": "webhook", "url": url + "/hook", "secret": SECRET}),
                             EventBus(), self.http, self.reactor)  # fmt: skip

    def received(self):
        return [d.body.decode() for d in self.fake.deliveries if d.verified]


class EmailKind(Kind):
    kind = "email"
    outcomes = (SENT, FAILED, DISABLE)  # retry: nothing listening, below

    def notifier(self, outcome=SENT):
        self.server = self.request.getfixturevalue("smtp_server")
        to = ["refused@example.com"] if outcome == FAILED else ["ops@example.com"]
        password = "wrong" if outcome == DISABLE else "s3cret"
        return self.made(self.server["port"], to=to, password=password, ca_file=self.server["ca_file"])

    def made(self, port, **keys):
        table = dict({"name": "ops", "kind": "email", "host": "localhost", "port": port,
                      "sender": "monitor@example.com", "to": ["ops@example.com"], "username": "monitor",
                      "password": "s3cret"}, **keys)  # fmt: skip
        table = {k: v for k, v in table.items() if v is not None}
        return make_notifier(channel(table), EventBus(), self.http, self.reactor)

    def at(self, url):
        port = int(url.rsplit(":", 1)[1])
        return self.made(port, security="none", username=None, password=None)

    def received(self):
        out = []
        for _, body in self.server["messages"]:
            message = email.message_from_bytes(body)
            out.append(f"{message['X-Monitor-Incident']} {message.get_payload(decode=True).decode()}")
        return out


class LiveKind(Kind):
    kind = "live"
    outcomes = (SENT, SKIPPED)

    def notifier(self, outcome=SENT):
        self.bus = EventBus()
        self.messages = []
        if outcome == SENT:
            self.bus.subscribe(ALERT, self.messages.append)
        return make_notifier(channel({"name": "ops", "kind": "live"}), self.bus, self.http, self.reactor)

    def received(self):
        return [json.dumps(m) for m in self.messages]


class DoubleKind(Kind):
    """The alert tests' scripted notifier: it answers what it is told to, and must answer as a notifier does."""

    kind = "webhook"
    outcomes = (SENT, RETRY, "retry-after", FAILED, DISABLE)

    def notifier(self, outcome=SENT):
        answer = {RETRY: Delivery(RETRY, 503, "busy"), "retry-after": Delivery(RETRY, 429, "slow down", 7.0),
                  FAILED: Delivery(FAILED, 422, "bad"), DISABLE: Delivery(DISABLE, 404, "gone")}.get(outcome)  # fmt: skip
        self.double = ScriptedNotifier("ops", [answer] if answer else [])
        return self.double

    def received(self):
        return [json.dumps(n.payload) for n in self.double.sent]


KINDS = {"slack": SlackKind, "webhook": WebhookKind, "email": EmailKind, "live": LiveKind, "double": DoubleKind}


@pytest.fixture
def http(reactor):
    client = HTTPClient(reactor)
    yield client
    pytest_twisted.blockon(client.stop())


@pytest.fixture(params=list(KINDS))
def kind(request, reactor, http):
    k = KINDS[request.param](reactor, http, request)
    yield k
    k.close()


def _kind_fixture(names):
    """A C{kind} fixture over the kinds C{names} only (a case that does not apply to a kind is not made for it)."""

    @pytest.fixture(params=names)
    def fixture(request, reactor, http):
        k = KINDS[request.param](reactor, http, request)
        yield k
        k.close()

    return fixture


#: Kinds whose receiver can ask for a retry.
retrying_kind = _kind_fixture([name for name, k in KINDS.items() if RETRY in k.outcomes])
#: Kinds that reach a receiver at an address (so it can be absent or hang).
wired_kind = _kind_fixture([name for name, k in KINDS.items() if hasattr(k, "at")])


def cases():
    return [(name, outcome) for name, k in KINDS.items() for outcome in k.outcomes]


@pytest.fixture(params=cases(), ids=lambda case: f"{case[0]}-{case[1]}")
def case(request, reactor, http):
    name, outcome = request.param
    k = KINDS[name](reactor, http, request)
    yield k, outcome
    k.close()


def test_provides_the_interface(kind):
    """verifyObject, and the name and kind of its channel table."""
    notifier = kind.notifier()
    assert verifyObject(INotifier, notifier)
    assert notifier.name == "ops" and notifier.kind == kind.kind


@pytest_twisted.ensureDeferred
async def test_each_answer_is_its_outcome(case, reactor):
    """Sent reaches the receiver once, naming the incident; retry, failed, disabled and skipped deliver nothing."""
    kind, outcome = case
    notifier = kind.notifier(outcome)
    result = await notifier.send(note(reactor)).addTimeout(WAIT, reactor)
    assert isinstance(result, Delivery) and result.outcome in OUTCOMES
    assert result.outcome == (RETRY if outcome == "retry-after" else outcome), result
    assert isinstance(result.detail, str)
    if outcome == SENT:
        (message,) = kind.received()
        assert "inc_1" in message
    else:
        assert result.detail and kind.received() == []
    assert result.retry_after == (7.0 if outcome == "retry-after" else None)


@pytest_twisted.ensureDeferred
async def test_a_retried_notification_is_delivered_once_more(retrying_kind, reactor):
    """The same notification sent again after a retry is delivered, still naming its incident."""
    kind = retrying_kind
    notifier = kind.notifier(RETRY)
    n = note(reactor)
    first = await notifier.send(n).addTimeout(WAIT, reactor)
    second = await notifier.send(n).addTimeout(WAIT, reactor)
    assert (first.outcome, second.outcome) == (RETRY, SENT)
    (message,) = kind.received()
    assert "inc_1" in message


@pytest_twisted.ensureDeferred
async def test_nothing_listening_is_a_retry_not_an_error(wired_kind, reactor):
    """A receiver that is not there: retry, with the reason."""
    kind = wired_kind
    notifier = kind.at(f"http://127.0.0.1:{free_port()}")
    result = await notifier.send(note(reactor)).addTimeout(WAIT, reactor)
    assert result.outcome == RETRY and result.detail


@pytest_twisted.ensureDeferred
async def test_a_hanging_attempt_can_be_cancelled(wired_kind, reactor):
    """Cancelling an attempt the receiver never answers ends it at once and closes its connection."""
    kind = wired_kind
    if kind.kind == "email":
        factory = Factory.forProtocol(Silent)
        factory.gone = gone = Deferred()
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        kind.closers.append(port.stopListening)
        url = f"smtp://127.0.0.1:{port.getHost().port}"
    else:
        hanging = Hanging()
        gone = hanging.gone
        url = kind.listen(hanging)
    d = kind.at(url).send(note(reactor))
    # Until the receiver has the connection (and, over HTTP, the request).
    await _later(reactor, 0.2)
    assert not d.called
    d.cancel()
    outcome = []
    d.addBoth(outcome.append)
    assert outcome, "a cancelled attempt must end at once"
    if isinstance(outcome[0], Delivery):
        assert outcome[0].outcome == RETRY
    else:
        assert outcome[0].check(Exception) is not None
    await gone.addTimeout(WAIT, reactor)


def _later(reactor, seconds):
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)
