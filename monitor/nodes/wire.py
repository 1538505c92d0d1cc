"""
The AMP protocol between the hub and its analysis nodes.

A node dials out to the hub (so it can sit behind NAT), then:

  1. node -> hub C{Hello(version, nonce)}: the hub refuses another protocol
     version, else answers with a fresh nonce of its own;
  2. node -> hub C{Register(name, proof("node", ...), workers, capacity,
     analyzers, versions)}: the hub checks the proof, the analyzers and
     that L{monitor.analysis.versions} match its own (refusing, logging and
     closing otherwise), and answers with C{proof("hub", ...)}, so the node
     knows it reached a hub that has the secret, and the classifier's word
     lists;
  3. hub -> node C{Models(tag, models)} when the node offers the C{models}
     analyzer and does not hold the hub's active learned models (it
     announced another C{models} tag at C{Register}), and again whenever
     the active set changes; until the node answers with the new tag it is
     given no work;
  4. hub -> node C{Analyze(classifier, texts, models, langs)} as often as
     the node's capacity allows, and C{Ping} when it is idle.  A node
     given a C{models} tag other than its own refuses the batch
     (C{STALE_MODELS}); the hub sends it elsewhere and the models again.

The learned models travel as their plain JSON (L{LinearModel.to_dict}),
never pickle.  The C{models} and C{langs} arguments are optional, so an
older node (no C{models} analyzer) still works: the hub applies the models
to its answers itself.

The secret never crosses the wire: each proof is an HMAC-SHA256, under the
secret, of both nonces and the role of the side that proves, so neither a
recorded proof nor one side's answer can be replayed as the other's.  The
handshake authenticates but does not encrypt, and cannot stop someone who
relays a whole connection: across networks you do not trust, listen with
an C{ssl:} endpoint and dial with C{tls:}.

AMP refuses any value over 65,535 bytes.  Texts and results therefore travel
as L{BigJSON}, which spreads one JSON document over as many keys
(C{texts}, C{texts.2}, C{texts.3}...) as it needs; the hub also cuts batches
into chunks of a few dozen kilobytes, so that one huge post delays only its
own chunk.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from twisted.protocols import amp

__all__ = [
    "ANALYZERS",
    "PROTOCOL_VERSION",
    "Analyze",
    "AnalysisFailed",
    "AuthenticationFailed",
    "BigJSON",
    "ClassifierMismatch",
    "Models",
    "ModelsRefused",
    "StaleModels",
    "Hello",
    "NotRegistered",
    "Ping",
    "Register",
    "Refused",
    "VersionMismatch",
    "classifier_digest",
    "proof",
]

#: Bumped on any change to the commands below.
PROTOCOL_VERSION = 1

#: What a node must be able to do: VADER scores and the rule labels.
ANALYZERS = ("sentiment", "labels")

#: What a node offers when it can apply the hub's learned models.
MODELS = "models"

#: Nonce sizes accepted from the other side, in bytes.
NONCE_BYTES = 32


class VersionMismatch(Exception):
    """
    The other side speaks another protocol version, or would score
    differently (other VADER, lexicon or rules).
    """


class AuthenticationFailed(Exception):
    """
    The proof does not match: the other side does not have the secret.
    """


class Refused(Exception):
    """
    The hub will not use this node (it lacks an analyzer, or sent a bad
    request during the handshake).
    """


class NotRegistered(Exception):
    """
    Work was sent before the handshake finished.
    """


class ClassifierMismatch(Exception):
    """
    The hub asked for another classifier than the one it sent at the
    handshake; the node refuses rather than label with the wrong lists.
    """


class StaleModels(Exception):
    """
    The hub named another set of learned models than the one the node
    holds; the node refuses rather than answer with the wrong models.
    """


class ModelsRefused(Exception):
    """
    The node could not read the models it was sent.
    """


class AnalysisFailed(Exception):
    """
    The node could not analyse the batch (its workers failed).
    """


class BigJSON(amp.Argument):
    """
    A JSON value of any size.  Its UTF-8 encoding is cut into pieces of at
    most C{MAX_VALUE_LENGTH} bytes, stored under C{name}, C{name.2},
    C{name.3}...; a piece may end inside a character, since the pieces are
    joined before decoding.  Lone surrogates, which JSON input can carry
    (C{"\\ud800"}), travel unchanged.
    """

    def toBox(self, name: bytes, strings, objects, proto) -> None:
        value = objects.pop(name.decode("ascii"), None)
        if value is None and self.optional:
            return
        data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
        limit = amp.MAX_VALUE_LENGTH
        strings[name] = data[:limit]
        for n, start in enumerate(range(limit, len(data), limit), 2):
            strings[b"%s.%d" % (name, n)] = data[start : start + limit]

    def fromBox(self, name: bytes, strings, objects, proto) -> None:
        if self.optional and name not in strings:
            objects[name.decode("ascii")] = None
            return
        pieces = [strings.pop(name)]
        n = 2
        while (key := b"%s.%d" % (name, n)) in strings:
            pieces.append(strings.pop(key))
            n += 1
        objects[name.decode("ascii")] = json.loads(b"".join(pieces).decode("utf-8", "surrogatepass"))


class Hello(amp.Command):
    """
    Node -> hub, first: the node's protocol version and its challenge;
    the answer is the hub's challenge.
    """

    arguments = [(b"version", amp.Integer()), (b"nonce", amp.String())]
    response = [(b"version", amp.Integer()), (b"nonce", amp.String())]
    errors = {VersionMismatch: b"VERSION_MISMATCH", Refused: b"REFUSED"}


class Register(amp.Command):
    """
    Node -> hub, second: the node's proof and what it offers.  The answer
    carries the hub's proof, the classifier's word lists
    (L{Classifier.to_dict}) and how often the hub pings an idle node.
    """

    arguments = [
        (b"name", amp.Unicode()),
        (b"proof", amp.String()),
        (b"workers", amp.Integer()),
        (b"capacity", amp.Integer()),
        (b"analyzers", amp.ListOf(amp.Unicode())),
        (b"versions", BigJSON()),
        (b"models", amp.Unicode(optional=True)),
    ]
    response = [(b"proof", amp.String()), (b"classifier", BigJSON()), (b"heartbeat", amp.Float())]
    errors = {
        AuthenticationFailed: b"AUTHENTICATION_FAILED",
        VersionMismatch: b"VERSION_MISMATCH",
        Refused: b"REFUSED",
    }


class Models(amp.Command):
    """
    Hub -> node: hold these learned models (a list of
    L{LinearModel.to_dict}, possibly empty) and apply them to the texts of
    every later C{Analyze} that names C{tag}.  The answer is the tag the
    node now holds.
    """

    arguments = [(b"tag", amp.Unicode()), (b"models", BigJSON())]
    response = [(b"tag", amp.Unicode())]
    errors = {ModelsRefused: b"MODELS_REFUSED", NotRegistered: b"NOT_REGISTERED"}


class Analyze(amp.Command):
    """
    Hub -> node: score these texts.  C{classifier} is the
    L{classifier_digest} of the word lists sent at the handshake.  The
    answer holds one row per text (see L{monitor.analysis.process.to_row}).

    With C{models} (the tag of the learned models the node holds, C{""}
    for none) and C{langs} (each text's language tag or C{None}), the node
    applies those models and each row also says whose answer the sentiment
    is (L{monitor.analysis.process.to_learned_row}).
    """

    arguments = [
        (b"classifier", amp.Unicode()),
        (b"texts", BigJSON()),
        (b"models", amp.Unicode(optional=True)),
        (b"langs", BigJSON(optional=True)),
    ]
    response = [(b"results", BigJSON())]
    errors = {
        AnalysisFailed: b"ANALYSIS_FAILED",
        ClassifierMismatch: b"CLASSIFIER_MISMATCH",
        NotRegistered: b"NOT_REGISTERED",
        StaleModels: b"STALE_MODELS",
    }


class Ping(amp.Command):
    """
    Hub -> node when idle: proves the connection is alive both ways.
    """

    arguments: list = []
    response: list = []


def proof(secret: bytes, role: bytes, first: bytes, second: bytes) -> bytes:
    """
    What the side playing C{role} (C{b"hub"} or C{b"node"}) sends to prove it
    knows C{secret}: an HMAC over the role and two nonces, the other side's
    first.
    """
    message = b"monitor-node-auth/%d %s " % (PROTOCOL_VERSION, role) + first + second
    return hmac.new(secret, message, hashlib.sha256).digest()


def classifier_digest(classifier: dict[str, Any]) -> str:
    """
    A short name for a classifier's word lists, sent with every batch.
    """
    data = json.dumps(classifier, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()
