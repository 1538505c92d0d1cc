"""
Bad input is a 400 that names the parameter, never a 500 (issue 9, item 5):
against a real hub, through the API and the pages, which read their
parameters with the same parser (L{monitor.web.params}).
"""

import base64
import json
from types import SimpleNamespace

import pytest

from monitor.web.params import MAX_DEPTH, BadParameter, Params, json_body
from tests.web.conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
HUGE = "9" * 400


def api(hub, path, body=None, method=None):
    import urllib.error
    import urllib.request

    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(hub.base + path, data=data, headers=dict(AUTH, **({"Content-Type": "application/json"} if data else {})),
                                 method=method)  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def cursor(text):
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("path,parameter", [
    ("/api/v1/posts?cursor=" + cursor("1700000000.0|" + "9" * 30), "cursor"),
    ("/api/v1/posts?cursor=" + cursor("inf|1"), "cursor"),
    ("/api/v1/posts?since=" + HUGE, "since"),
    ("/api/v1/posts?until=" + HUGE, "until"),
    ("/api/v1/posts?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
    ("/api/v1/posts?q=%00", "q"),
    ("/api/v1/posts?topic=%ff", "topic"),
    ("/api/v1/stats?since=" + HUGE, "since"),
    ("/api/v1/incidents?since=" + HUGE, "since"),
    ("/api/v1/incidents?cursor=" + cursor("nan|x"), "cursor"),
    ("/api/v1/dead-letters?limit=" + HUGE, "limit"),
])  # fmt: skip
def test_bad_query_parameters_are_named(hub, path, parameter):
    """Overflowing cursors, 400-digit times, NUL and non-UTF-8: each a 400 naming its parameter."""
    status, body = api(hub, path)
    assert (status, body["parameter"]) == (400, parameter), body


def test_deeply_nested_json_is_refused(hub):
    """A body nested 100,000 deep is a 400 about the body, not a RecursionError."""
    deep = b"[" * 100_000 + b"]" * 100_000
    for path in ("/api/v1/rules", "/api/v1/backtest"):
        status, body = api(hub, path, deep)
        assert (status, body["parameter"]) == (400, "body"), body
        assert "deeper" in body["error"]


def test_a_list_for_the_rule_type_is_a_problem(hub):
    """A list where the type's string belongs names rule.type."""
    status, body = api(hub, "/api/v1/rules", {"name": "x", "type": ["keyword"], "phrases": ["a"]})
    assert status == 400
    assert any(p.startswith("rule.type:") for p in body["problems"]), body


def test_backtest_times_out_of_range(hub):
    """Backtest times that are not times (huge, infinite text) name their key."""
    for since in (1e300, HUGE, "Infinity", True):
        status, body = api(
            hub,
            "/api/v1/backtest",
            {
                "rule": {"name": "x", "type": "keyword", "phrases": ["a"]},
                "since": since,
                "until": "2026-01-01T00:00:00Z",
            },
        )
        assert (status, body.get("parameter")) == (400, "since"), (since, body)


def test_nul_in_a_static_path(hub):
    """A NUL byte in a path is a 400, not an error from the file system."""
    for path in ("/static/app%00.js", "/static/%00", "/dashboard%00"):
        status, _, _ = hub.request(path)
        assert status == 400, path


def test_the_posts_page_uses_the_same_parser(hub):
    """The posts page shows the parser's message next to the field; the export answers 400 naming it."""
    opener, _ = hub.login("vi")
    status, _, page = hub.request("/posts?since=" + HUGE, opener=opener)
    assert status == 400 and b'id="error-since"' in page and b"ISO 8601" in page
    status, _, page = hub.request("/posts?cursor=" + cursor("1.0|" + "9" * 30), opener=opener)
    assert status == 400 and b'id="error-cursor"' in page
    status, _, body = hub.request("/posts/export.json?until=" + HUGE, opener=opener)
    assert status == 400 and json.loads(body)["parameter"] == "until"


def request(args=None, body=b""):
    import io

    return SimpleNamespace(args={k.encode(): [v.encode() for v in vs] for k, vs in (args or {}).items()},
                           content=io.BytesIO(body))  # fmt: skip


def test_params_raise_or_collect():
    """The API mode stops at the first problem; the page mode collects every one."""
    with pytest.raises(BadParameter) as e:
        Params(request({"since": [HUGE]})).time("since")
    assert e.value.name == "since"
    params = Params(request({"since": [HUGE], "limit": ["x"], "sentiment": ["meh"]}), collect=True)
    assert (params.time("since"), params.integer("limit", 5, 1, 10), params.choice("sentiment", ("positive",))) == (
        None,
        5,
        None,
    )
    assert set(params.errors) == {"since", "limit", "sentiment"}
    assert Params(request({"since": ["1700000000.5"]})).time("since") == 1700000000.5
    assert Params(request({"since": ["2026-01-31T12:00:00Z"]})).time("since") == 1769860800.0


def test_json_depth():
    """Nesting up to the limit parses; one more level, or brackets inside strings, are told apart."""
    ok = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert json_body(request(body=ok)) is not None
    with pytest.raises(BadParameter):
        json_body(request(body=b"[" + ok + b"]"))
    assert json_body(request(body=json.dumps({"s": "[" * 1000}).encode())) == {"s": "[" * 1000}
    with pytest.raises(BadParameter):
        json_body(request(body=b'{"a": NaN}'))


def test_what_the_fuzz_found(hub):
    """A rule's 400 names the body; a NUL in an API path is a JSON 400; a token id past SQLite's integer is a form error."""
    status, body = api(hub, "/api/v1/rules", [])
    assert (status, body["parameter"]) == (400, "body"), body
    status, body = api(hub, "/api/v1/rules/%00")
    assert (status, body["parameter"]) == (400, "path"), body
    opener, csrf = hub.login("admin")
    for value in ("9" * 400, "²", "-1", ""):
        status, _, page = hub.request("/admin/tokens/revoke", {"csrf": csrf, "id": value}, opener=opener)
        assert status == 400 and b"No such live token." in page, (value, status)


def test_row_id():
    from monitor.web.params import row_id

    assert row_id("1") == 1 and row_id(str(2**63 - 1)) == 2**63 - 1
    for text in ("0", str(2**63), "9" * 400, "²", "-1", " 1", "", None):
        assert row_id(text) is None, text
