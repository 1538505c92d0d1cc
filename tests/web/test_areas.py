"""
The pages' areas (L{monitor.web.pages}): each route is served by the area
that the dispatcher of L{monitor.web.ui.WebUI} hands its path to.
"""

import re

from monitor.web.ui import WebUI


def test_every_route_reaches_its_own_area():
    """A route added to an area under a path the dispatcher sends elsewhere would never answer."""
    ui = WebUI(users=None, reactor=None, store=None, topics=None)
    seen = 0
    for name, area in ui.areas.items():
        for rule in type(area).app.url_map.iter_rules():
            path = re.sub(r"<[^>]+>", "x", rule.rule)
            segments = path.encode("ascii").lstrip(b"/").split(b"/")
            assert WebUI.area_of(segments) == name, rule.rule
            seen += 1
    assert seen == len(list(WebUI.routes())) >= 49  # every route of the pages before they were split


def test_unknown_paths_go_to_the_sign_in_area():
    """Its error handlers give the 404 page (or the JSON 404 under /ui/)."""
    assert WebUI.area_of([b"nowhere"]) == "auth"
    assert WebUI.area_of([b"ui", b"nowhere.json"]) == "auth"
    assert WebUI.area_of([b"ui"]) == "auth"
    assert WebUI.area_of([b""]) == "auth"
