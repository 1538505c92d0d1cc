"""
Property-based fuzzing of a real hub on loopback (issue 9): every operation
of the OpenAPI description the hub serves at C{/api/v1/openapi.json}, and
every route of the pages (each POST with the fields its form in the page
really has, each GET with the filters it reads), with hostile values made
by Hypothesis.  No input may give a 500, keep the reactor busy for more than
100 ms (the hub's own heartbeat, C{monitor_reactor_stall_seconds}), or grow
the hub's memory past a bound.

Bounded and repeatable: derandomized, no example database, a fixed number
of examples per route (C{FUZZ_EXAMPLES}, default 25; raise it by hand to
look harder).
"""

import json
import os
import re
from html.parser import HTMLParser
from urllib.parse import quote, quote_from_bytes, urlencode, urlsplit

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.web.ui import WebUI
from tests.web.conftest import CONFIG, TOKEN, Browser, HubProcess

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
PASSWORD = "fuzz password 1"
#: The fuzzing user; the forms never get its name (it must stay an admin).
ME = "fuzz"
#: Who fuzzes their own account's form (its wrong passwords are throttled).
SELF = "fuzz-self"
#: How much the hub's resident memory may grow over the whole fuzz.
MEMORY_BOUND = 150 * 1024 * 1024

# -- values ---------------------------------------------------------------------------

_SPECIAL = ["", "0", "-1", "1", "9" * 400, "1e309", "nan", "inf", "-inf", "2026-01-01T00:00:00Z", "2026-13-45",
            "\x00", "%00", "../../etc/passwd", "' OR 1=1 --", '"', "NEAR(", "a*", "*", "<script>x</script>",
            "=cmd|' /C calc'!A0", "\u202e", "😀" * 50, "x" * 5000, "Acme", "Globex", "victim", "viewer", "admin",
            "editor", "keyword", "volume", "24h", "7d", "5m", "on", "[]", "{}", "null", "true"]  # fmt: skip
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
TEXT = st.one_of(st.sampled_from(_SPECIAL), _TEXT, st.integers(-(2**70), 2**70).map(str))


def _json_values():
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), TEXT)
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)  # fmt: skip


JSON = _json_values()


def for_schema(schema, components):
    """Values for a JSON schema of the description: mostly of its type, sometimes anything."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    if "oneOf" in schema:
        return st.one_of([for_schema(s, components) for s in schema["oneOf"]])
    typed = []
    if "enum" in schema:
        typed.append(st.sampled_from(schema["enum"]))
    kinds = schema.get("type", [])
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        if kind == "object" and "properties" in schema:
            props = {k: for_schema(v, components) for k, v in schema["properties"].items()}
            required = {k: props.pop(k) for k in schema.get("required", [])}
            typed.append(st.fixed_dictionaries(required, optional=props))
        elif kind == "string":
            typed.append(TEXT)
        elif kind == "integer":
            typed.append(st.integers(-(2**70), 2**70))
        elif kind == "number":
            typed.append(st.floats(allow_nan=False))
        elif kind == "boolean":
            typed.append(st.booleans())
        elif kind == "array":
            typed.append(st.lists(for_schema(schema.get("items", {}), components), max_size=5))
    return st.one_of(*typed, JSON) if typed else JSON


def query_value(schema):
    """A query value: text, a number out of range, or raw bytes that are not UTF-8."""
    options = [
        TEXT.map(lambda s: quote(s, safe="")),
        st.binary(max_size=20).map(lambda b: quote_from_bytes(b, safe="")),
    ]
    if "enum" in schema:
        options.append(st.sampled_from(schema["enum"]))
    if schema.get("type") == "integer":
        options.append(st.integers(-(2**70), 2**70).map(str))
    return st.one_of(options)


# -- the hub ----------------------------------------------------------------------------


class Client(Browser):
    """
    A browser from a loopback address of its own (so the login throttle
    one client trips leaves the others alone), keeping a session of
    C{user} and its CSRF token.
    """

    def __init__(self, hub, user=ME, source="127.0.0.1"):
        super().__init__(hub, source)
        self.user = user
        self.csrf = ""

    def send(self, method, target, body=None, headers=None):
        return self.request(method, target, headers=headers, body=body)

    def form(self, method, path, fields):
        body = urlencode(fields, doseq=True).encode()
        if method == "GET":
            return self.send("GET", path + ("?" + body.decode() if body else ""))
        return self.send("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})

    def login(self):
        self.cookies = {}
        _, _, page = self.send("GET", "/login")
        csrf = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
        status, _, _ = self.form("POST", "/login", {"csrf": csrf, "name": self.user, "password": PASSWORD})
        assert status == 303, status
        _, _, page = self.send("GET", "/account")
        self.csrf = re.search(rb'data-csrf="([^"]+)"', page).group(1).decode()


def stalls_over_100ms(client):
    """Heartbeats the hub saw delayed by more than 0.1 s of its own work, so far."""
    _, _, text = client.send("GET", "/metrics")
    text = text.decode()
    total = float(re.search(r"^monitor_reactor_stall_seconds_count ([0-9.e+]+)$", text, re.M).group(1))
    within = float(re.search(r'^monitor_reactor_stall_seconds_bucket\{le="0\.1"\} ([0-9.e+]+)$', text, re.M).group(1))
    return total - within


@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory):
    hub = HubProcess(str(tmp_path_factory.mktemp("fuzz")), CONFIG)
    hub.add_user(ME, "admin", PASSWORD)
    hub.add_user(SELF, "viewer", PASSWORD)
    hub.add_user("victim", "viewer", "victim password 1")
    hub.start()
    hub.append(*({"text": f"acme post {i} #launch", "lang": "en"} for i in range(20)))
    client = Client(hub)
    client.login()
    process = psutil.Process(hub.proc.pid)
    rule = {"name": "fuzz-rule", "type": "keyword", "topics": ["Acme"], "phrases": ["acme"]}
    status, _, _ = client.send("POST", "/api/v1/rules", json.dumps(rule).encode(),
                               {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})  # fmt: skip
    assert status in (200, 201), status
    status, _, _ = client.form("POST", "/admin/tokens", {"csrf": client.csrf, "token_name": "fuzz token"})
    assert status in (200, 303), status
    myself = Client(hub, SELF, "127.0.0.3")
    myself.login()
    forms = crawl_forms(client, Client(hub))  # before the fuzz changes what the pages show
    hub.fuzz = {"client": client, "self": myself, "anonymous": Client(hub, None, "127.0.0.2"), "forms": forms, "rss": process.memory_info().rss, "stalls": stalls_over_100ms(client),
                "process": process}  # fmt: skip
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def description(fuzz_hub):
    status, _, body = fuzz_hub.fuzz["client"].send(
        "GET", "/api/v1/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200
    return json.loads(body)


def _operations():
    from monitor.web.openapi import openapi

    spec = openapi()
    return [(path, method) for path, item in spec["paths"].items() for method in item if method != "parameters"]


def no_server_error(status, body, what):
    assert status < 500, f"{what} gave {status}: {body[:500]!r}"


# -- the API --------------------------------------------------------------------------------


@pytest.mark.parametrize("path,method", _operations())
def test_api_operation(fuzz_hub, description, path, method):
    """Hypothesis requests from the description: every answer below 500, errors as JSON naming a parameter."""
    item = description["paths"][path]
    operation = item[method]
    components = description["components"]["schemas"]
    parameters = item.get("parameters", []) + operation.get("parameters", [])
    path_params = {p["name"]: st.one_of(TEXT, st.sampled_from(["1", "fuzz-rule", "webhook", "0"])).map(lambda s: quote(s, safe=""))
                   for p in parameters if p["in"] == "path"}  # fmt: skip
    query = {p["name"]: query_value(p["schema"]) for p in parameters if p["in"] == "query"}
    body_schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    bodies = st.none()
    if body_schema is not None:
        bodies = st.one_of(
            for_schema(body_schema, components).map(lambda v: json.dumps(v).encode()),
            st.binary(max_size=200),
            st.sampled_from([b"[" * 5000 + b"]" * 5000, b'{"name": "x", "type": ' * 3, b"\xff\xfe", b""]),
        )
    client = fuzz_hub.fuzz["client"]

    @FUZZ
    @given(st.fixed_dictionaries(path_params), st.fixed_dictionaries({}, optional=query), bodies)
    def run(where, params, body):
        target = path.format(**where)
        if params:
            target += "?" + "&".join(f"{k}={v}" for k, v in params.items())
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        status, _, data = client.send(method.upper(), target, body, headers)
        no_server_error(status, data, f"{method.upper()} {target}")
        if status == 400:
            assert "parameter" in json.loads(data), data

    run()


# -- the pages ---------------------------------------------------------------------------------

#: The pages whose forms are read (with their fields) before fuzzing.
PAGES = ["/dashboard", "/live", "/map", "/posts", "/topics", "/topics/new", "/topics/edit?name=Acme", "/sources",
         "/alerts", "/alerts/rules/new", "/alerts/rules/fuzz-rule/edit", "/admin", "/account", "/login",
         "/models"]  # fmt: skip
#: What the GET routes may read, besides their forms' fields.
QUERY_NAMES = ["topic", "range", "since", "until", "q", "sentiment", "label", "source", "limit", "cursor", "bucket",
               "name", "format", "period", "next", "kinds", "state", "severity", "rule", "top", "days", "post_id",
               "story", "ids", "order"]  # fmt: skip


class Forms(HTMLParser):
    """The forms of a page: (method, action) -> {field name: values seen}."""

    def __init__(self):
        super().__init__()
        self.forms = {}
        self._current = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("action"):
            key = (attrs.get("method", "get").upper(), attrs["action"])
            self._current = self.forms.setdefault(key, {})
        elif self._current is not None and tag in ("input", "select", "textarea", "button") and attrs.get("name"):
            self._current.setdefault(attrs["name"], set()).add(attrs.get("value") or "")
        elif self._current is not None and tag == "option":
            last = list(self._current)[-1] if self._current else None
            if last:
                self._current[last].add(attrs.get("value") or "")

    def handle_endtag(self, tag):
        if tag == "form":
            self._current = None


def _pattern(rule):
    return re.compile("^" + re.sub(r"<[^>]+>", "[^/]+", rule) + "$")


def ui_routes():
    routes = []
    for rule in WebUI.routes():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, rule.rule))
    return sorted(set(routes))


def crawl_forms(client, anonymous):
    found = {}
    for page in PAGES:
        status, _, body = (anonymous if page == "/login" else client).send("GET", page)
        assert status == 200, page
        parser = Forms()
        parser.feed(body.decode("utf-8"))
        for key, fields in parser.forms.items():
            merged = found.setdefault(key, {})
            for name, values in fields.items():
                merged.setdefault(name, set()).update(values)
    return found


@pytest.fixture(scope="module")
def page_forms(fuzz_hub):
    return fuzz_hub.fuzz["forms"]


def test_every_post_route_has_a_form_or_is_known(page_forms):
    """
    The pages' forms cover the POST routes (those needing a rule, incident,
    trained model or first run are filled by name; /ui/feedback is the
    correction bar's JSON call, not a form).
    """
    covered = {rule for method, rule in ui_routes() if method == "POST"
               for (m, action) in page_forms if m == "POST" and _pattern(rule).match(urlsplit(action).path)}  # fmt: skip
    missing = {rule for method, rule in ui_routes() if method == "POST"} - covered
    assert missing <= {"/setup/<token>", "/alerts/rules/<name>/enable", "/alerts/incidents/<incident_id>/acknowledge",
                       "/alerts/incidents/<incident_id>/resolve", "/alerts/channels/<name>/enable",
                       "/models/<name>/<verb>", "/ui/feedback"}, missing  # fmt: skip


def _fields_of(page_forms, method, rule):
    fields = {}
    for (m, action), names in page_forms.items():
        if m == method and _pattern(rule).match(urlsplit(action).path):
            for name, values in names.items():
                fields.setdefault(name, set()).update(values)
    if not fields:
        fields = {name: set() for name in (QUERY_NAMES if method == "GET" else ["csrf", "by", "name", "original"])}
    if method == "GET":
        for name in QUERY_NAMES:
            fields.setdefault(name, set())
    return fields


def _field_value(name, seen):
    values = st.one_of(TEXT, st.sampled_from(sorted(seen))) if seen - {""} else TEXT
    if name in ("name", "user", "original"):
        values = values.filter(lambda v: v not in (ME, SELF))
    return values


@pytest.mark.parametrize("method,rule", ui_routes())
def test_page_route(fuzz_hub, page_forms, method, rule):
    """Each page route with its form's fields set by Hypothesis: never a 500; a session that ends is renewed."""
    client = fuzz_hub.fuzz[
        {"/login": "anonymous", "/setup/<token>": "anonymous", "/account/password": "self"}.get(rule, "client")
    ]
    fields = _fields_of(page_forms, method, rule)
    fields.pop("csrf", None)
    strategies = {name: st.lists(_field_value(name, seen), min_size=1, max_size=2) for name, seen in fields.items()}
    segments = {name: st.one_of(TEXT, st.sampled_from(["fuzz-rule", "1", "Acme", "webhook"])).filter(lambda v: v != ME)
                for name in re.findall(r"<([^>]+)>", rule)}  # fmt: skip

    @FUZZ
    @given(
        st.fixed_dictionaries(segments),
        st.fixed_dictionaries({}, optional=strategies),
        st.sampled_from(["good", "good", "none", "bad"]),
    )
    def run(where, form, csrf):
        path = rule
        for name, value in where.items():
            path = path.replace(f"<{name}>", quote(value, safe="") or "x")
        if method == "POST" and csrf != "none":
            form = dict(form, csrf=client.csrf if csrf == "good" else "forged")
        status, headers, data = client.form(method, path, form)
        no_server_error(status, data, f"{method} {path} {form!r}")
        ended = (headers.get("Location") or "").startswith("/login") or b"Your session has ended" in data
        if ended and client.user is not None:
            client.login()

    run()


def test_no_stall_and_bounded_memory(fuzz_hub):
    """Runs last: over the whole fuzz no heartbeat was held past 100 ms, and memory stayed bounded."""
    client = fuzz_hub.fuzz["client"]
    stalls = stalls_over_100ms(client) - fuzz_hub.fuzz["stalls"]
    grown = fuzz_hub.fuzz["process"].memory_info().rss - fuzz_hub.fuzz["rss"]
    print(f"fuzz: {stalls:.0f} stalls over 100 ms, memory grew {grown / 2**20:.1f} MiB")
    assert stalls == 0, fuzz_hub.output()
    assert grown < MEMORY_BOUND, grown
