"""
E-mail over SMTP with C{twisted.mail}: STARTTLS (or TLS from the first
byte on port 465) and a login when configured.

Outcomes: accepted sent; a 5xx answer to the message or a refused login
fails (a login refused disables the channel: every message would be
refused); connection problems and 4xx answers retry.
"""

from __future__ import annotations

import email.policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from io import BytesIO
from typing import Optional

from twisted.internet.defer import Deferred, ensureDeferred
from zope.interface import implementer

from monitor.alerts.notifiers import (
    DISABLE,
    FAILED,
    RETRY,
    SENT,
    Delivery,
    Notification,
    explanation_lines,
    headline,
    summary_lines,
)
from monitor.interfaces import INotifier

__all__ = ["EmailNotifier", "email_message"]


def email_message(notification: Notification, sender: str, to: list[str], now: float) -> bytes:
    """
    A plain-text message about one incident event, with the notification
    id in the Message-ID so a resend is recognisable.
    """
    payload = notification.payload
    incident = payload["incident"]
    body = [headline(payload), ""]
    body += summary_lines(payload)
    why = explanation_lines(incident)
    if why:
        body += [""] + why
    samples = incident.get("samples") or []
    if samples:
        body += ["", "Top posts:"]
        for s in samples:
            text = " ".join((s.get("text") or "").split())
            body.append(f"- @{s.get('author')}: {text}")
            body.append(
                f"  {s.get('likes', 0)} likes, {s.get('reposts', 0)} reposts"
                + (f" - {s['url']}" if s.get("url") else "")
            )
    body += ["", f"Incident {incident['id']} (times are the posts' own time).", ""]
    msg = EmailMessage(policy=email.policy.SMTP.clone(linesep="\n"))
    msg["Subject"] = f"[monitor] {headline(payload)}"
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(now, usegmt=True)
    msg["Message-ID"] = make_msgid(idstring=notification.id, domain="monitor.invalid")
    msg["X-Monitor-Incident"] = incident["id"]
    msg.set_content("\n".join(body), cte="quoted-printable")
    return msg.as_bytes()


@implementer(INotifier)
class EmailNotifier:
    """
    Send incident events to a list of addresses through one SMTP server.

    @ivar security: C{starttls} (required, not merely tried), C{tls}
        (implicit TLS) or C{none}.
    @ivar ca_file: trust this PEM certificate (a private CA) instead of the
        system's roots.
    """

    kind = "email"

    def __init__(
        self,
        name: str,
        host: str,
        sender: str,
        to: list[str],
        port: int = 587,
        security: str = "starttls",
        username: Optional[str] = None,
        password: Optional[str] = None,
        ca_file: Optional[str] = None,
        timeout: float = 30.0,
        reactor=None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.name = name
        self.host = host
        self.port = port
        self.sender = sender
        self.to = list(to)
        self.security = security
        self.username = username
        self.password = password
        self.ca_file = ca_file
        self.timeout = timeout
        self.reactor = reactor

    def _tls_options(self):
        from twisted.internet.ssl import Certificate, optionsForClientTLS, platformTrust

        if self.ca_file:
            with open(self.ca_file, "rb") as f:
                trust = Certificate.loadPEM(f.read())
        else:
            trust = platformTrust()
        return optionsForClientTLS(self.host, trustRoot=trust)

    def _deliver(self, message: bytes) -> Deferred:
        # twisted.mail.smtp imports the global reactor: import it only here.
        from twisted.mail.smtp import ESMTPSenderFactory

        result: Deferred = Deferred()
        tls = self._tls_options() if self.security != "none" else None
        factory = ESMTPSenderFactory(
            self.username.encode("utf-8") if self.username else None,
            self.password.encode("utf-8") if self.password else None,
            self.sender,
            self.to,
            BytesIO(message),
            result,
            retries=0,
            timeout=self.timeout,
            contextFactory=tls if self.security == "starttls" else None,
            heloFallback=self.username is None and self.security == "none",
            requireAuthentication=self.username is not None,
            requireTransportSecurity=self.security == "starttls",
            # Without a host name the sender makes no TLS options of its own,
            # so "none" never tries STARTTLS with the system's roots.
            hostname=self.host if self.security != "none" else None,
        )
        if self.security == "tls":
            connector = self.reactor.connectSSL(self.host, self.port, factory, tls, timeout=self.timeout)
        else:
            connector = self.reactor.connectTCP(self.host, self.port, factory, timeout=self.timeout)

        def cancel(d):
            factory.sendFinished = True
            if factory.currentProtocol is not None and factory.currentProtocol.transport is not None:
                factory.currentProtocol.transport.abortConnection()
            else:
                connector.disconnect()

        outer = Deferred(cancel)
        result.chainDeferred(outer)
        return outer

    async def _send(self, notification: Notification) -> Delivery:
        from twisted.mail.smtp import AUTHDeclinedError, SMTPClientError, SMTPConnectError, SMTPDeliveryError

        message = email_message(notification, self.sender, self.to, self.reactor.seconds())
        try:
            accepted, _ = await self._deliver(message)
        except AUTHDeclinedError as e:
            return Delivery(DISABLE, getattr(e, "code", None), f"the SMTP server refused the login: {e}")
        except SMTPConnectError as e:
            return Delivery(RETRY, None, f"cannot reach {self.host}:{self.port}: {e}")
        except SMTPDeliveryError as e:
            code = getattr(e, "code", None)
            if code is not None and 500 <= code < 600:
                return Delivery(FAILED, code, f"the SMTP server refused the message: {e}")
            return Delivery(RETRY, code, f"the SMTP server deferred the message: {e}")
        except SMTPClientError as e:
            code = getattr(e, "code", None)
            if code is not None and 500 <= code < 600 and code not in (554,):
                return Delivery(FAILED, code, str(e))
            return Delivery(RETRY, code, str(e))
        except Exception as e:
            return Delivery(RETRY, None, f"{e.__class__.__name__}: {e}")
        return Delivery(SENT, 250, f"accepted for {accepted} of {len(self.to)} recipients")

    def send(self, notification: Notification):
        return ensureDeferred(self._send(notification))
