"""
The OpenAPI 3.1 description of the HTTP API, served at
C{/api/v1/openapi.json}.

It is built from the same tables the API checks against (the labels,
sentiments and limits of the store, the rule keys of the alert config), and
a test compares its routes with the Klein app's, so it stays true.  The
fuzz tests generate their requests from it.
"""

from __future__ import annotations

from typing import Any

from monitor.model import LABELS, SENTIMENTS
from monitor.store import MAX_LIMIT, QUERY_SCAN, STORY_ID
from monitor.stories import STORY_ORDERS

__all__ = ["openapi"]

_TIME = {"type": "string", "description": "ISO 8601 (2026-01-31T12:00:00Z) or unix seconds"}
_ERROR = {"$ref": "#/components/schemas/Error"}
_OBJECT = {"type": "object"}
_SEVERITIES = ["info", "warning", "critical"]


def _query(name: str, schema: dict, description: str = "") -> dict:
    out: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        out["description"] = description
    return out


def _path(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def _text(name: str, description: str = "") -> dict:
    return _query(name, {"type": "string"}, description)


def _limit(default: int, highest: int) -> dict:
    return _query("limit", {"type": "integer", "minimum": 1, "maximum": highest, "default": default})


def _answer(description: str, schema: dict = _OBJECT, errors=("400", "401")) -> dict:
    responses = {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}
    for code in errors:
        responses[code] = {
            "description": {"400": "A bad parameter, named in `parameter`", "401": "No valid bearer token",
                            "404": "No such thing", "409": "Conflict", "413": "The body is over the route's limit",
                            "503": "The hub evaluating the alerts did not answer"}[code],
            "content": {"application/json": {"schema": _ERROR}},
        }  # fmt: skip
    return responses


def _json_body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _rule_schema() -> dict:
    from monitor.alerts.config import RULE_COMMON, RULE_FIELDS
    from monitor.alerts.rules import RULE_TYPES
    from monitor.fields import DURATION, STRINGS

    kinds = {str: {"type": "string"}, int: {"type": "integer"}, float: {"type": "number"}, bool: {"type": "boolean"},
             STRINGS: {"type": "array", "items": {"type": "string"}},
             DURATION: {"type": ["string", "number"], "description": "seconds, or 30s, 5m, 1h, 1d"}}  # fmt: skip
    properties: dict[str, Any] = {}
    for fields in (RULE_COMMON, *RULE_FIELDS.values()):
        for key, field in fields.items():
            properties.setdefault(
                key, dict(kinds.get(field.type, {}), **({"description": field.doc} if field.doc else {}))
            )
    properties["type"] = {"type": "string", "enum": list(RULE_TYPES)}
    properties["origin"] = {"type": "string", "description": "ignored when sent"}
    properties["open_incidents"] = {"type": "integer", "description": "ignored when sent"}
    return {"type": "object", "required": ["name", "type"], "properties": properties}


def _incident_schema() -> dict:
    """
    An incident as the API returns it; its C{explanation} in full (see
    L{monitor.alerts.explain}), the rest as objects.
    """
    number, text, count = {"type": ["number", "null"]}, {"type": ["string", "null"]}, {"type": "integer"}

    def rows(**properties):
        return {"type": "array", "items": {"type": "object", "properties": properties}}

    explanation = {
        "type": "object",
        "description": "Why it fired (spike, shift, story); {} for other types",
        "properties": {
            "window": {"type": "string"}, "from": {"type": "string"}, "until": {"type": "string"},
            "posts": count, "baseline_posts": {"type": ["integer", "null"]},
            "stories": rows(id={"type": "string"}, terms={"type": "array", "items": {"type": "string"}},
                            count=count, baseline=number, size=count),
            "terms": rows(term={"type": "string"}, count=count, baseline=number),
            "top_posts": rows(id={"type": "string"}, author={"type": "string"}, text={"type": "string"}, url=text,
                              source={"type": "string"}, network=text, likes=count, reposts=count,
                              author_followers={"type": ["integer", "null"]}),
            "sources": rows(source={"type": "string"}, network=text, count=count),
            "places": rows(lat={"type": "number"}, lon={"type": "number"}, count=count),
        },
    }  # fmt: skip
    strings = ("id", "rule", "type", "topic", "source", "severity", "state", "clock", "opened_at", "last_hit_at",
               "resolved_at", "resolved_by", "acknowledged_at", "acknowledged_by")  # fmt: skip
    properties: dict[str, Any] = {k: dict(text) for k in strings}
    properties["state"] = {"type": "string", "enum": ["open", "acknowledged", "resolved"]}
    properties.update(posts=count, hits=count, backfill={"type": "boolean"}, signal=_OBJECT, peak=_OBJECT,
                      samples={"type": "array", "items": _OBJECT}, explanation=explanation,
                      notifications={"type": "array", "items": _OBJECT})  # fmt: skip
    return {"type": "object", "properties": properties}


def _topic_schema() -> dict:
    from monitor.config import STRINGS, TOPIC_FIELDS

    kinds = {
        str: {"type": "string"},
        bool: {"type": "boolean"},
        STRINGS: {"type": "array", "items": {"type": "string"}},
    }
    properties = {key: dict(kinds[field.type]) for key, field in TOPIC_FIELDS.items()}
    properties["query"]["description"] = "a topic query (AND, OR, NOT, NEAR/n, wildcards, field filters)"
    return {"type": "object", "properties": properties}


def _feedback_paths() -> dict[str, Any]:
    """
    Corrections of posts (monitor.learn.feedback).
    """
    from monitor.learn.feedback import MAX_LABELS

    correction = {"type": "object", "properties": {
        "sentiment": {"type": ["string", "null"], "enum": [*SENTIMENTS, None], "description": "null clears it"},
        "labels": {"type": "object", "maxProperties": MAX_LABELS,
                   "propertyNames": {"pattern": "^[a-z][a-z0-9_]{0,39}$"},
                   "additionalProperties": {"type": ["boolean", "null"]},
                   "description": "true: applies, false: does not, null: forget the earlier word"}}}  # fmt: skip
    post_id = {"name": "post_id", "in": "path", "required": True, "description": "the post's id, percent-encoded",
               "schema": {"type": "string", "minLength": 1}}  # fmt: skip
    return {
        "/api/v1/posts/{post_id}/feedback": {
            "parameters": [post_id],
            "get": {"summary": "A post's correction: sentiment, labels, who and when",
                    "responses": _answer("the correction", errors=("401", "404"))},
            "put": {"summary": "Correct a post (merged into its earlier correction; the learned models train on these)",
                    "requestBody": _json_body(correction),
                    "responses": _answer("the correction", errors=("400", "401", "404", "413"))},
            "delete": {"summary": "Undo a post's correction", "responses": _answer("deleted", errors=("401", "404"))},
        },
        "/api/v1/models": {"get": {"summary": "The learned models: state, version, examples, cross-validated "
                                              "evaluation against the built-in answer, learning curve",
                                   "responses": _answer("models")}},
        **{f"/api/v1/models/{{name}}/{verb}": {"parameters": [_path("name")], "post": {
            "summary": summary, "parameters": [_text("language", "default en")],
            "requestBody": _json_body({"type": "object", "properties": {"version": {"type": "string"}}}, required=False),
            "responses": _answer("the model", errors=("400", "401", "404"))}}
           for verb, summary in (("activate", "Use a model's latest version (or the version given) whatever its figures"),
                                 ("deactivate", "Stop using a model until it is activated again"))},
        "/api/v1/rescore": {
            "get": {"summary": "The re-scoring job's progress (state, done, total, changed, models)",
                    "responses": _answer("the job", errors=("401",))},
            "post": {"summary": "Re-score the stored posts with the active models, in the background",
                     "responses": _answer("the job started", errors=("401", "409"))},
        },
        "/api/v1/feedback": {"get": {
            "summary": "Every correction, latest change first (format=csv exports; the next page's cursor is then "
                       "in the X-Next-Cursor header)",
            "parameters": [_query("format", {"type": "string", "enum": ["json", "csv"], "default": "json"}),
                           _text("by"), _text("label"), _limit(100, MAX_LIMIT), _text("cursor")],
            "responses": _answer("a page of corrections"),
        }},
    }  # fmt: skip


def openapi(version: str = "1") -> dict[str, Any]:
    """
    The description, as a JSON-ready dict.
    """
    rule_ref = {"$ref": "#/components/schemas/Rule"}
    incident_ref = {"$ref": "#/components/schemas/Incident"}
    one_incident = {"type": "object", "properties": {"incident": incident_ref}}
    by = _json_body({"type": "object", "properties": {"by": {"type": "string", "minLength": 1, "maxLength": 100}}},
                    required=False)  # fmt: skip
    paths: dict[str, dict] = {
        "/healthz": {
            "get": {
                "summary": "Liveness: queue depth and each source's state (no token)",
                "security": [],
                "responses": _answer("ok", errors=()),
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (no token)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "text format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/api/v1/openapi.json": {"get": {"summary": "This description", "responses": _answer("OpenAPI 3.1")}},
        "/api/v1/posts": {
            "get": {
                "summary": "Posts, newest first, one page at a time",
                "parameters": [
                    _text("topic"),
                    _text("source"),
                    _query("sentiment", {"type": "string", "enum": list(SENTIMENTS)}),
                    _query("label", {"type": "string", "enum": list(LABELS)}),
                    _text("q", 'full-text search: words ANDed, "quoted phrases", prefix*'),
                    _text(
                        "query",
                        "a topic query (AND, OR, NOT, NEAR/n, wildcards, fields such as likes:>=100), "
                        f"evaluated on the newest {QUERY_SCAN:,} posts the other filters select per page; "
                        "one that does not parse is a 400 with its position and what was expected",
                    ),
                    _query(
                        "story",
                        {"type": "string", "pattern": f"^{STORY_ID.pattern}$"},
                        "only this story's posts (a story's `id`; every post has its `story`)",
                    ),
                    _query("since", _TIME, "inclusive"),
                    _query("until", _TIME, "exclusive"),
                    _limit(50, MAX_LIMIT),
                    _text("cursor", "the `next` of the previous page"),
                ],
                "responses": _answer(
                    "a page of posts",
                    {
                        "type": "object",
                        "required": ["posts", "next"],
                        "properties": {
                            "posts": {"type": "array", "items": _OBJECT},
                            "next": {"type": ["string", "null"]},
                        },
                    },
                ),
            }
        },
        **_feedback_paths(),
        "/api/v1/topics": {"get": {"summary": "The tracked topics", "responses": _answer("topics")}},
        "/api/v1/topics/{name}": {
            "parameters": [_path("name")],
            "get": {"summary": "One topic", "responses": _answer("the topic", errors=("401", "404"))},
            "put": {
                "summary": "Create or replace a topic (checked like [[topics]]; a bad query is a problem "
                "naming topic.query with its position and what was expected)",
                "requestBody": _json_body({"$ref": "#/components/schemas/Topic"}),
                "responses": _answer("the topic", errors=("400", "401", "413")),
            },
            "delete": {
                "summary": "Delete a topic (its stored posts keep its name)",
                "responses": _answer("deleted", errors=("401", "404")),
            },
        },
        "/api/v1/stats": {
            "get": {
                "summary": "Volume, sentiment, labels, engagement, top authors, hashtags and terms",
                "parameters": [
                    _text("topic"),
                    _query("since", _TIME),
                    _query("until", _TIME),
                    _query("bucket", {"type": "string", "pattern": "^[0-9]{1,7}[smhd]?$"}, "seconds, or 5m, 1h, 1d"),
                    _query("top", {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}),
                ],
                "responses": _answer("statistics"),
            }
        },
        "/api/v1/stories": {
            "get": {
                "summary": "Stories: posts clustered by their words, shared links and place, largest or rising first",
                "parameters": [
                    _text("topic"),
                    _query("since", _TIME),
                    _query("until", _TIME),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 20}),
                    _query(
                        "order",
                        {"type": "string", "enum": list(STORY_ORDERS), "default": "size"},
                        "size: largest first; rising: growing fastest against its own past first",
                    ),
                ],
                "responses": _answer("stories"),
            }
        },
        "/api/v1/sources": {"get": {"summary": "The state of each collector", "responses": _answer("sources")}},
        "/api/v1/nodes": {"get": {"summary": "The analysis nodes", "responses": _answer("nodes")}},
        "/api/v1/hubs": {
            "get": {
                "summary": "The live hubs of the cluster (this one alone with the memory queue)",
                "description": "Each hub's heartbeat: name, host, pid, when it started, when it was last seen, "
                "the leases it holds (collector:NAME, alerts) and the posts it stored per second.",
                "responses": dict(
                    _answer(
                        "hubs",
                        {
                            "type": "object",
                            "required": ["hubs"],
                            "properties": {
                                "hubs": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": [
                                            "name",
                                            "host",
                                            "pid",
                                            "started",
                                            "last_seen",
                                            "leases",
                                            "posts_per_second",
                                            "this",
                                        ],
                                        "properties": {
                                            "name": {"type": "string"},
                                            "host": {"type": "string"},
                                            "pid": {"type": "integer"},
                                            "started": {"type": "string"},
                                            "last_seen": {"type": "string"},
                                            "leases": {"type": "array", "items": {"type": "string"}},
                                            "posts_per_second": {"type": "number"},
                                            "this": {"type": "boolean", "description": "the hub that answered"},
                                        },
                                    },
                                }
                            },
                        },
                    ),
                    **{
                        "503": {
                            "description": "Redis cannot be reached",
                            "content": {"application/json": {"schema": _ERROR}},
                        }
                    },
                ),
            }
        },
        "/api/v1/dead-letters": {
            "get": {
                "summary": "Payloads a collector could not read, newest first",
                "parameters": [_text("source"), _limit(100, 1000)],
                "responses": _answer("dead letters"),
            }
        },
        "/api/v1/rules": {
            "get": {"summary": "Every alert rule", "responses": _answer("rules")},
            "post": {
                "summary": "Create a rule",
                "requestBody": _json_body(rule_ref),
                "responses": _answer("the rule", errors=("400", "401", "409", "413")),
            },
        },
        "/api/v1/rules/{name}": {
            "parameters": [_path("name")],
            "get": {"summary": "One rule", "responses": _answer("the rule", errors=("401", "404"))},
            "put": {
                "summary": "Replace a rule",
                "requestBody": _json_body(rule_ref),
                "responses": _answer("the rule", errors=("400", "401", "404", "413")),
            },
            "delete": {
                "summary": "Delete a rule (its open incidents are resolved)",
                "responses": _answer("deleted", errors=("401", "404")),
            },
        },
        "/api/v1/rules/{name}/enable": {
            "parameters": [_path("name")],
            "post": {"summary": "Switch a rule on", "responses": _answer("the rule", errors=("401", "404"))},
        },
        "/api/v1/rules/{name}/disable": {
            "parameters": [_path("name")],
            "post": {"summary": "Switch a rule off", "responses": _answer("the rule", errors=("401", "404"))},
        },
        "/api/v1/backtest": {
            "post": {
                "summary": "Run a rule over stored posts of a period (at most 31 days)",
                "requestBody": _json_body(
                    {
                        "type": "object",
                        "required": ["rule", "since", "until"],
                        "properties": {
                            "rule": {"oneOf": [{"type": "string"}, rule_ref]},
                            "since": {"type": ["string", "number"]},
                            "until": {"type": ["string", "number"]},
                        },
                    }
                ),  # fmt: skip
                "responses": _answer("what the rule would have done", errors=("400", "401", "404", "413")),
            }
        },
        "/api/v1/incidents": {
            "get": {
                "summary": "Incidents, newest opened first",
                "parameters": [
                    _query("state", {"type": "string", "enum": ["open", "acknowledged", "resolved", "active"]}),
                    _text("rule"),
                    _text("topic"),
                    _text("source"),
                    _query("severity", {"type": "string", "enum": _SEVERITIES}),
                    _query("since", _TIME, "on opened_at"),
                    _query("until", _TIME),
                    _limit(50, MAX_LIMIT),
                    _text("cursor"),
                ],
                "responses": _answer(
                    "a page of incidents",
                    {
                        "type": "object",
                        "properties": {
                            "incidents": {"type": "array", "items": incident_ref},
                            "next": {"type": ["string", "null"]},
                        },
                    },
                ),
            }
        },
        "/api/v1/incidents/{incident_id}": {
            "parameters": [_path("incident_id")],
            "get": {
                "summary": "One incident with its notifications and explanation",
                "responses": _answer("the incident", one_incident, errors=("401", "404")),
            },
        },
        "/api/v1/incidents/{incident_id}/acknowledge": {
            "parameters": [_path("incident_id")],
            "post": {
                "summary": "Acknowledge an incident",
                "requestBody": by,
                "responses": _answer("the incident", one_incident, errors=("400", "401", "404", "409", "503")),
            },
        },
        "/api/v1/incidents/{incident_id}/resolve": {
            "parameters": [_path("incident_id")],
            "post": {
                "summary": "Resolve an incident",
                "requestBody": by,
                "responses": _answer("the incident", one_incident, errors=("400", "401", "404", "409", "503")),
            },
        },
        "/api/v1/channels": {"get": {"summary": "Each notification channel's state", "responses": _answer("channels")}},
        "/api/v1/channels/{name}/enable": {
            "parameters": [_path("name")],
            "post": {
                "summary": "Use a channel its receiver disabled again",
                "responses": _answer("done", errors=("401", "404")),
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "monitor",
            "version": version,
            "description": "The hub's HTTP API.  Every /api/ route needs `Authorization: Bearer <token>`; "
            "a bad or unknown parameter is a 400 naming it; a body over the route's limit is a 413.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "parameter": {"type": "string"},
                        "problems": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "Rule": _rule_schema(),
                "Topic": _topic_schema(),
                "Incident": _incident_schema(),
            },  # fmt: skip
        },
    }
