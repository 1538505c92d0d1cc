"""
The small functions the pages lean on for safety and for the trending lists.
"""

import pytest

from monitor.web.site import content_security_policy, tile_origin
from monitor.web.pages.base import _link, safe_next
from monitor.web.pages.dashboard import trending
from monitor.web.pages.posts import _csv_cell
from monitor.web.pages.sources import _table


@pytest.mark.parametrize(
    "target,expected",
    [
        ("/live?topic=Acme", "/live?topic=Acme"),
        ("//evil.example/x", "/dashboard"),
        ("https://evil.example/", "/dashboard"),
        ("/\\evil.example", "/dashboard"),
        ("javascript:alert(1)", "/dashboard"),
        ("", "/dashboard"),
        (None, "/dashboard"),
    ],
)
def test_after_login_only_local_paths(target, expected):
    """The login page's next= never sends anyone to another site."""
    assert safe_next(target) == expected


@pytest.mark.parametrize(
    "url,expected",
    [
        ("https://example.com/p/1", "https://example.com/p/1"),
        ("http://example.com", "http://example.com"),
        ("javascript:alert(1)", ""),
        (" JavaScript:alert(1)", ""),
        ("data:text/html,x", ""),
        (None, ""),
    ],
)
def test_only_http_links_are_links(url, expected):
    """A post's URL becomes a link only if it is http or https."""
    assert _link(url) == expected


def test_csv_cells_cannot_be_formulas():
    """Cells a spreadsheet would evaluate get a leading quote; others are untouched."""
    assert [_csv_cell(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "fine", 3, None)] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "fine",
        3,
        None,
    ]


def test_trending_rises_against_its_baseline():
    """Terms up against the previous period rank by growth; steady or falling ones are left out."""
    current = [
        {"tag": "outage", "count": 40},
        {"tag": "acme", "count": 100},
        {"tag": "new", "count": 5},
        {"tag": "once", "count": 1},
    ]
    previous = [{"tag": "outage", "count": 2}, {"tag": "acme", "count": 95}]
    rows = trending(current, previous, "tag")
    assert [r["tag"] for r in rows] == ["outage", "new"]
    assert rows[1]["previous"] == 0 and rows[1]["change"] is None


def test_nodes_status_of_any_shape_becomes_a_table():
    """Whatever nodes.status() returns is shown as rows and facts, never an error."""
    assert _table(None) is None
    listed = _table([{"name": "n1", "state": "up"}, {"name": "n2", "load": 3}])
    assert listed["headings"] == ["name", "state", "load"] and listed["rows"][1] == ["n2", "", "3"]
    keyed = _table({"connected": 1, "nodes": {"n1": {"state": "up"}}})
    assert keyed["rows"] == [["n1", "up"]] and keyed["facts"] == {"connected": "1"}
    assert _table("weird")["facts"] == {"status": "weird"}


def test_content_security_policy():
    """No inline script, no framing; the WebSocket of this host and the tile server are allowed."""
    csp = content_security_policy(
        b"127.0.0.1:8080", tile_origin("https://{s}.tile.example.org/{z}/{x}/{y}.png")
    ).decode()
    assert "script-src 'self';" in csp and "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert "frame-ancestors 'none'" in csp and "ws://127.0.0.1:8080" in csp
    assert "img-src 'self' data: https://*.tile.example.org" in csp
    assert "ws://" not in content_security_policy(b"evil.example; script-src *", "").decode()
