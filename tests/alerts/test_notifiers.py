"""
The notifiers against local servers over real sockets: the fake Slack and
webhook receivers (200, 429 with Retry-After, 500, 404...), a real Twisted
ESMTP server with STARTTLS and AUTH, and the live channel.
"""

import datetime
import json
import socket

import pytest
import pytest_twisted
from twisted.internet.defer import succeed
from twisted.web.server import Site
from zope.interface import implementer
from zope.interface.verify import verifyObject

from monitor.alerts.config import channel_defaults
from monitor.alerts.incidents import Incident
from monitor.alerts.notifiers import DISABLE, FAILED, RETRY, SENT, SKIPPED, Notification, headline, retry_after
from monitor.alerts.notifiers.email import EmailNotifier
from monitor.alerts.notifiers.http import HTTPClient
from monitor.alerts.notifiers.live import LiveNotifier
from monitor.alerts.notifiers.slack import SlackNotifier, slack_message
from monitor.alerts.notifiers.webhook import WebhookNotifier, secret_key, verify
from monitor.alerts.outbox import Outbox
from monitor.store.sqlite_alerts import SQLiteAlerts
from monitor.store.writes import WriteQueue
from monitor.interfaces import INotifier
from monitor.metrics import Metrics
from tests.alerts.helpers import FakePush, SyncStore
from tests.fakes.slack import FakeSlack
from tests.fakes.webhook import FakeWebhookReceiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SLACK = "/services/T000/B000/XXXX"


def note(reactor, msg_id="msg_1", event="opened", text="Acme <b>is down</b> & @channel <!everyone>"):
    incident = Incident("inc_1", "acme-spike", "volume_spike", "Acme", None, "warning", 1.7e9, 1.7e9 + 60, 900.0)
    incident.posts, incident.hits = 140, 3
    incident.signal = {"value": 140, "count": 140, "baseline": 12.5, "ratio": 11.2, "window": "5m", "direction": "up"}
    incident.samples = [{"id": "s:1", "author": "maria", "text": text, "url": "https://social.example/@maria/1",
                         "created_at": "2023-11-14T22:13:20.000Z", "likes": 12, "reposts": 3, "replies": 1,
                         "author_followers": 900, "sentiment": "negative", "labels": ["crisis"]}]  # fmt: skip
    return Notification(msg_id, "inc_1", "slack", event, {"event": event, "incident": incident.to_dict()},
                        created_at=reactor.seconds())  # fmt: skip


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http(reactor):
    client = HTTPClient(reactor)
    yield client
    pytest_twisted.blockon(client.stop())


@pytest.fixture
def slack(reactor):
    fake = FakeSlack()
    port = reactor.listenTCP(0, Site(fake), interface="127.0.0.1")
    fake.base = f"http://127.0.0.1:{port.getHost().port}"
    yield fake
    pytest_twisted.blockon(port.stopListening())


@pytest.fixture
def receiver(reactor):
    fake = FakeWebhookReceiver(SECRET, reactor)
    port = reactor.listenTCP(0, Site(fake), interface="127.0.0.1")
    fake.url = f"http://127.0.0.1:{port.getHost().port}/hook"
    yield fake
    pytest_twisted.blockon(port.stopListening())


def test_notifiers_provide_the_interface(reactor, http):
    """Every notifier kind provides INotifier."""
    for notifier in (
        SlackNotifier("s", "http://127.0.0.1:9/", http),
        WebhookNotifier("w", "http://127.0.0.1:9/", http, secret=SECRET),
        EmailNotifier("e", "localhost", "a@b", ["c@d"], reactor=reactor),
        LiveNotifier("l", object()),
    ):
        assert verifyObject(INotifier, notifier)


# -- Slack ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_slack_message_is_delivered_and_readable(reactor, http, slack):
    """A 200 is sent; the message has topic, rule, counts and the top post with its link, escaped."""
    notifier = SlackNotifier("slack", slack.base + SLACK, http, reactor=reactor)
    result = await notifier.send(note(reactor))
    assert (result.outcome, result.status, result.detail) == (SENT, 200, "ok")
    (message,) = slack.messages[SLACK]
    assert message["text"].startswith("New incident [warning]: volume spike on Acme (rule acme-spike)")
    text = json.dumps(message["blocks"])
    assert "140 posts in 5m, baseline 12.5 (11.2x)" in text
    assert "<https://social.example/@maria/1|@maria>" in text
    assert "Acme &lt;b&gt;is down&lt;/b&gt; &amp; @channel &lt;!everyone&gt;" in text
    assert "<!everyone>" not in text


@pytest.mark.parametrize("answer,outcome,wait", [
    ((429, {"Retry-After": "7"}), RETRY, 7.0),
    (500, RETRY, None),
    (404, DISABLE, None),
    (410, DISABLE, None),
    (403, DISABLE, None),
    ((400, {}, b"invalid_payload"), FAILED, None),
])  # fmt: skip
@pytest_twisted.ensureDeferred
async def test_slack_answers(reactor, http, slack, answer, outcome, wait):
    """Each Slack answer maps to its outcome: 429 waits Retry-After, 5xx retries, 403/404/410 disable, 400 fails."""
    slack.script(SLACK, [answer])
    result = await SlackNotifier("slack", slack.base + SLACK, http, reactor=reactor).send(note(reactor))
    assert result.outcome == outcome and result.retry_after == wait
    if outcome == DISABLE:
        assert result.detail.startswith("Slack refused the webhook: ")


@pytest_twisted.ensureDeferred
async def test_slack_not_there_is_retried(reactor, http):
    """Nothing listening: retry, with the reason."""
    result = await SlackNotifier("slack", f"http://127.0.0.1:{free_port()}{SLACK}", http, reactor=reactor).send(
        note(reactor)
    )
    assert result.outcome == RETRY and "refused" in result.detail.lower()


def test_slack_message_fits_block_kit_limits():
    """Long texts are cut to Block Kit's limits; odd URLs are not linked."""
    from types import SimpleNamespace

    n = note(SimpleNamespace(seconds=lambda: 0), text="x" * 10_000)
    n.payload["incident"]["samples"][0]["url"] = "https://evil.example/|<@U1>"
    n.payload["incident"]["topic"] = "T" * 500
    message = slack_message(n.payload)
    assert len(message["blocks"][0]["text"]["text"]) <= 150
    assert all(len(b["text"]["text"]) <= 3000 for b in message["blocks"] if "text" in b)
    assert "evil.example" not in json.dumps(message)


# -- webhooks ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_webhook_is_signed_and_verified_by_the_receiver(reactor, http, receiver):
    """The receiver, with its own HMAC code, accepts the signature; our verify() agrees; the body is the incident."""
    notifier = WebhookNotifier("hook", receiver.url, http, secret=SECRET, reactor=reactor)
    result = await notifier.send(note(reactor))
    assert (result.outcome, result.status) == (SENT, 204)
    (delivery,) = receiver.deliveries
    assert delivery.id == "msg_1" and delivery.verified and delivery.signature.startswith("v1,")
    assert delivery.payload["type"] == "incident.opened"
    assert delivery.payload["data"]["incident"]["topic"] == "Acme"
    headers = {"webhook-id": delivery.id, "webhook-timestamp": str(delivery.timestamp),
               "webhook-signature": delivery.signature}  # fmt: skip
    assert verify(secret_key(SECRET), headers, delivery.body, reactor.seconds())
    assert not verify(secret_key(SECRET), headers, delivery.body + b" ", reactor.seconds())
    assert not verify(secret_key(SECRET), headers, delivery.body, reactor.seconds() + 600)


@pytest_twisted.ensureDeferred
async def test_webhook_retry_keeps_its_id(reactor, http, receiver):
    """A retried notification keeps its webhook-id; the receiver sees one delivery and one duplicate."""
    notifier = WebhookNotifier("hook", receiver.url, http, secret=SECRET, reactor=reactor)
    receiver.script([500])
    first = await notifier.send(note(reactor))
    second = await notifier.send(note(reactor))
    third = await notifier.send(note(reactor))
    assert [first.outcome, second.outcome, third.outcome] == [RETRY, SENT, SENT]
    ids = {r[1]["webhook-id"] for r in receiver.requests}
    assert ids == {"msg_1"} and len(receiver.deliveries) == 1 and receiver.duplicates == ["msg_1"]


@pytest.mark.parametrize("answer,outcome,wait", [
    ((429, {"Retry-After": "3"}), RETRY, 3.0),
    (503, RETRY, None),
    (404, DISABLE, None),
    (410, DISABLE, None),
    (422, FAILED, None),
])  # fmt: skip
@pytest_twisted.ensureDeferred
async def test_webhook_answers(reactor, http, receiver, answer, outcome, wait):
    """Each receiver answer maps to its outcome."""
    receiver.script([answer])
    result = await WebhookNotifier("hook", receiver.url, http, secret=SECRET, reactor=reactor).send(note(reactor))
    assert result.outcome == outcome and result.retry_after == wait


@pytest_twisted.ensureDeferred
async def test_webhook_with_the_wrong_secret_disables(reactor, http, receiver):
    """A receiver refusing our signature (401) disables the channel."""
    notifier = WebhookNotifier("hook", receiver.url, http, secret="whsec_" + "QUJD" * 8, reactor=reactor)
    result = await notifier.send(note(reactor))
    assert result.outcome == DISABLE and result.status == 401 and not receiver.deliveries


def test_retry_after_forms():
    """Retry-After in seconds or as an HTTP date; capped; nonsense ignored."""
    assert retry_after(b"12", 0) == 12.0
    assert retry_after("Thu, 01 Jan 2026 00:01:00 GMT", 1767225600.0) == 60.0
    assert retry_after("99999", 0) == 3600.0
    assert retry_after("soon", 0) is None and retry_after(None, 0) is None


# -- the outbox with real receivers ------------------------------------------


@pytest_twisted.ensureDeferred
async def test_outbox_waits_for_retry_after_then_delivers(reactor, http, slack):
    """Slack says 429 Retry-After: 1; the outbox waits that long, then delivers, recording both attempts."""
    from twisted.internet.task import deferLater

    store = SyncStore()
    alerts = SQLiteAlerts(store)
    spec = dict(channel_defaults("slack", "slack"), url=slack.base + SLACK)
    outbox = Outbox([(spec, SlackNotifier("slack", spec["url"], http, reactor=reactor))], alerts, WriteQueue(reactor),
                    Metrics(), reactor)  # fmt: skip
    outbox.startService()
    slack.script(SLACK, [(429, {"Retry-After": "1"})])
    started = reactor.seconds()
    # Stored first, as the engine does: the outbox delivers what it claims in the store.
    message = note(reactor)
    await alerts.save_incidents([Incident("inc_1", "acme-spike", "volume_spike", "Acme", None, "warning", started,
                                          started, 900.0)], [message], started)  # fmt: skip
    outbox.enqueue([message])
    # Until the second attempt is recorded: the message reaching Slack is
    # not yet its answer reaching the outbox.
    for _ in range(100):
        if len(store.rows("SELECT id FROM alert_attempts")) >= 2:
            break
        await deferLater(reactor, 0.05, lambda: None)
    outbox.stopService()
    assert slack.messages[SLACK], (slack.requests, store.rows("SELECT * FROM alert_attempts"), outbox.status())
    assert [r.code for r in slack.requests] == [429, 200]
    outcomes = store.rows("SELECT outcome, status, at FROM alert_attempts ORDER BY id")
    assert [(o, s) for o, s, _ in outcomes] == [("retry", 429), ("sent", 200)]
    assert outcomes[1][2] - started >= 1.0


# -- e-mail ----------------------------------------------------------------------


def _certificate(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    (tmp_path / "ca.pem").write_bytes(cert_pem)
    return str(tmp_path / "ca.pem"), cert_pem + key_pem


@pytest.fixture
def smtp_server(reactor, tmp_path):
    """A real Twisted ESMTP server on 127.0.0.1 with STARTTLS and AUTH (LOGIN, PLAIN) for monitor/s3cret."""
    from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
    from twisted.cred.portal import IRealm, Portal
    from twisted.internet.ssl import PrivateCertificate
    from twisted.mail import smtp
    from twisted.mail.imap4 import PLAINCredentials

    ca_file, pem = _certificate(tmp_path)
    state = {"messages": [], "tls_at_auth": [], "ca_file": ca_file}

    @implementer(smtp.IMessage)
    class Message:
        def __init__(self, user):
            self.user, self.lines = user, []

        def lineReceived(self, line):
            self.lines.append(line)

        def eomReceived(self):
            state["messages"].append((self.user, b"\n".join(self.lines)))
            return succeed(None)

        def connectionLost(self):
            pass

    @implementer(smtp.IMessageDelivery)
    class Delivery:
        def __init__(self, user):
            self.user = user

        def receivedHeader(self, helo, origin, recipients):
            return b"Received: by the test server"

        def validateFrom(self, helo, origin):
            return origin

        def validateTo(self, user):
            state.setdefault("to", []).append(str(user.dest))
            return lambda: Message(self.user)

    @implementer(IRealm)
    class Realm:
        def requestAvatar(self, avatar_id, mind, *interfaces):
            return smtp.IMessageDelivery, Delivery(avatar_id), lambda: None

    class Server(smtp.ESMTP):
        def state_AUTH(self, response):
            state["tls_at_auth"].append(self.startedTLS)
            return super().state_AUTH(response)

    class Factory(smtp.SMTPFactory):
        protocol = Server

        def buildProtocol(self, addr):
            p = super().buildProtocol(addr)
            p.challengers = {b"LOGIN": smtp.LOGINCredentials, b"PLAIN": PLAINCredentials}
            p.ctx = PrivateCertificate.loadPEM(pem).options()
            return p

    checker = InMemoryUsernamePasswordDatabaseDontUse(monitor=b"s3cret")
    port = reactor.listenTCP(0, Factory(Portal(Realm(), [checker])), interface="127.0.0.1")
    state["port"] = port.getHost().port
    yield state
    pytest_twisted.blockon(port.stopListening())


@pytest_twisted.ensureDeferred
async def test_email_over_starttls_with_login(reactor, smtp_server):
    """The message goes through STARTTLS, then AUTH, to every recipient, with the incident in it."""
    notifier = EmailNotifier("mail", "localhost", "monitor@example.com", ["ops@example.com", "brand@example.com"],
                             port=smtp_server["port"], username="monitor", password="s3cret",
                             ca_file=smtp_server["ca_file"], timeout=10, reactor=reactor)  # fmt: skip
    result = await notifier.send(note(reactor))
    assert result.outcome == SENT, result
    # The test server keeps one copy per recipient.
    ((user, body), (user2, body2)) = smtp_server["messages"]
    assert (
        user == user2 == b"monitor" and body == body2 and smtp_server["tls_at_auth"] and all(smtp_server["tls_at_auth"])
    )
    assert sorted(smtp_server["to"]) == ["brand@example.com", "ops@example.com"]
    text = body.decode()
    unfolded = text.replace("\n ", " ")
    assert "Subject: [monitor] New incident [warning]: volume spike on Acme (rule acme-spike)" in unfolded
    assert "Message-ID: <" in text and "msg_1" in text


@pytest_twisted.ensureDeferred
async def test_email_login_refused_disables(reactor, smtp_server):
    """A refused login disables the channel: every message would be refused."""
    notifier = EmailNotifier("mail", "localhost", "monitor@example.com", ["ops@example.com"],
                             port=smtp_server["port"], username="monitor", password="wrong",
                             ca_file=smtp_server["ca_file"], timeout=10, reactor=reactor)  # fmt: skip
    result = await notifier.send(note(reactor))
    assert result.outcome == DISABLE and not smtp_server["messages"]


@pytest_twisted.ensureDeferred
async def test_email_untrusted_certificate_is_not_sent(reactor, smtp_server):
    """Without the server's CA, STARTTLS fails verification: nothing is sent, the attempt is retried."""
    notifier = EmailNotifier("mail", "localhost", "monitor@example.com", ["ops@example.com"],
                             port=smtp_server["port"], username="monitor", password="s3cret", timeout=10,
                             reactor=reactor)  # fmt: skip
    result = await notifier.send(note(reactor))
    assert result.outcome == RETRY and not smtp_server["messages"]


@pytest_twisted.ensureDeferred
async def test_email_server_not_there(reactor):
    """Nothing listening: retry."""
    notifier = EmailNotifier("mail", "localhost", "a@example.com", ["b@example.com"], port=free_port(),
                             security="none", reactor=reactor)  # fmt: skip
    result = await notifier.send(note(reactor))
    assert result.outcome == RETRY and "cannot reach" in result.detail


# -- live ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_live_publishes_or_skips(reactor):
    """With the live channel listening the event is published as an alert; without it, skipped."""
    from monitor.bus import ALERT, EventBus

    push = FakePush()
    bus = EventBus()
    skipped = await LiveNotifier("live", bus).send(note(reactor))
    assert skipped.outcome == SKIPPED
    bus.subscribe(ALERT, lambda message: push.publish("alert", message))
    sent = await LiveNotifier("live", bus).send(note(reactor))
    assert sent.outcome == SENT and push.published[0][0] == "alert"
    assert push.published[0][1]["incident"]["id"] == "inc_1"


def test_headline_words():
    """Headlines say what happened to what."""
    from types import SimpleNamespace

    n = note(SimpleNamespace(seconds=lambda: 0), event="resolved")
    assert headline(n.payload) == "Resolved [warning]: volume spike on Acme (rule acme-spike)"
    n.payload["incident"]["signal"]["direction"] = "down"
    assert "volume drop" in headline(n.payload)
