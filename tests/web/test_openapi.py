"""
The OpenAPI 3.1 description at C{/api/v1/openapi.json} is valid and true:
every route of the API's Klein app is described, with its method, and
every described operation exists.
"""

import json
import re

from openapi_spec_validator import validate

from monitor.web.api import Api
from monitor.web.openapi import openapi
from tests.web.conftest import TOKEN


def _code_routes():
    routes = set()
    for rule in Api.app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        routes.update((m.lower(), path) for m in rule.methods - {"HEAD", "OPTIONS"})
    return routes


def test_the_description_is_valid_openapi_3_1():
    description = openapi()
    validate(description)
    assert description["openapi"].startswith("3.1")


def test_every_route_is_described_and_every_described_route_exists():
    described = {
        (method, path) for path, item in openapi()["paths"].items() for method in item if method != "parameters"
    }
    code = _code_routes()
    assert sorted(code - described) == [], "routes missing from the description"
    assert sorted(described - code) == [], "described routes that do not exist"


def test_path_parameters_match_the_routes():
    """Each {name} in a path is a described path parameter."""
    for path, item in openapi()["paths"].items():
        wanted = set(re.findall(r"{([a-z_]+)}", path))
        given = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
        assert wanted == given, path


def test_served_by_the_hub(hub):
    status, headers, body = hub.request("/api/v1/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert json.loads(body) == json.loads(json.dumps(openapi()))
    status, _, _ = hub.request("/api/v1/openapi.json")
    assert status == 401
