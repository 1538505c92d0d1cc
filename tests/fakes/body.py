"""
A response body fed by hand: what C{Response.deliverBody} hands a body
protocol is a proxy producer over the connection, and stopping it drops
the connection.
"""

from twisted.python.failure import Failure
from twisted.web.client import ResponseDone


class FakeBodyTransport:
    """The producer a body protocol gets: pause, resume, stop (drop)."""

    def __init__(self):
        self.paused = False
        self.aborted = False

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False

    def stopProducing(self):
        self.aborted = True


class FakeResponse:
    """A response whose body the test feeds by hand."""

    def __init__(self):
        self.transport = FakeBodyTransport()
        self.protocol = None

    def deliverBody(self, protocol):
        self.protocol = protocol
        protocol.makeConnection(self.transport)

    def finish(self, exc=None):
        self.protocol.connectionLost(Failure(exc or ResponseDone()))
