"""
The configuration file: one TOML document, validated as a whole before the
reactor starts.

Every problem is collected and reported at once, each naming its key (and the
line it is on), because a user fixing a config file one error per restart is
a user lost.  Unknown keys are errors: a typo must not be silently ignored.

String values may refer to environment variables as C{${NAME}} (C{$${} is a
literal C{${}), so secrets need not be written into the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from monitor.model import Topic
from monitor.query import QueryError, parse as parse_query


class ConfigError(Exception):
    """
    The configuration is not usable.  C{problems} lists every problem found,
    each a human sentence that names the key.
    """

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [f"{self.path}: {len(self.problems)} problem(s) in the configuration:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class ConfigProblem(Exception):
    """
    The configuration is valid but does not work on this machine (a port
    in use, a file that cannot be read): one line that names the key to
    change, shown instead of a traceback.
    """

    def __init__(self, path: str, key: str, message: str) -> None:
        self.path = path
        self.key = key
        self.message = message
        #: An example of a value that would work, if known.
        self.suggestion = ""
        super().__init__(message)

    def __str__(self) -> str:
        section, _, name = self.key.rpartition(".")
        example = f", e.g. {self.suggestion}" if self.suggestion else ""
        return f"{self.message}; change [{section}] {name} in {self.path}{example}"


# --- field specifications ---------------------------------------------------

_MISSING = object()


@dataclass(frozen=True)
class Field:
    """
    One allowed key: its type, its default (absent means required) and an
    optional check returning a problem or C{None}.
    """

    type: Any
    default: Any = _MISSING
    check: Optional[Callable[[Any], Optional[str]]] = None
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is _MISSING


def one_of(*choices: str) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        if value not in choices:
            return "must be one of " + ", ".join(repr(c) for c in choices)
        return None

    return check


def at_least(low: float) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        if value < low:
            return f"must be at least {low}"
        return None

    return check


def between(low: float, high: float) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        if not low <= value <= high:
            return f"must be between {low} and {high}"
        return None

    return check


def non_empty(value: Any) -> Optional[str]:
    return "must not be empty" if not value else None


def endpoint(value: str) -> Optional[str]:
    """
    Check a server endpoint description without listening on it.
    """
    from twisted.internet import endpoints
    from twisted.internet.testing import MemoryReactor

    try:
        endpoints.serverFromString(MemoryReactor(), value)
    except Exception as e:  # endpoint parsers raise many kinds of error
        return f"is not a valid Twisted endpoint description ({e})"
    return None


def url_check(*schemes: str, empty: bool = False) -> Callable[[Any], Optional[str]]:
    """
    A config check for a URL with one of C{schemes} and a host.
    """
    from urllib.parse import urlsplit

    def check(value: Any) -> Optional[str]:
        if empty and value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            return "must be a URL starting with " + " or ".join(f"{s}://" for s in schemes)
        return None

    return check


def http_url(value: Any) -> Optional[str]:
    """
    Check an http(s) URL, or each of a list of them.
    """
    from urllib.parse import urlsplit

    for url in value if isinstance(value, list) else [value]:
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            return f"must be an http or https URL, not {url!r}"
    return None


#: A list of strings, for Field.type.
STRINGS = list[str]

def postgresql_dsn(value: str) -> Optional[str]:
    """
    Check a libpq connection string (C{postgresql://...} or C{key=value
    ...}) without connecting; the message never repeats it (it may hold a
    password).
    """
    if not value:
        return None
    import psycopg2.extensions

    try:
        psycopg2.extensions.parse_dsn(value)
    except psycopg2.ProgrammingError:
        return (
            "is not a PostgreSQL connection string: use a URI such as "
            "postgresql://user:pass@host:5432/db or key=value pairs (host=... dbname=...)"
        )
    return None


STORE_FIELDS = {
    "kind": Field(str, "sqlite", one_of("sqlite", "postgresql"), "Where posts are kept."),
    # With kind = "postgresql" too: accounts, alerts and learning stay here.
    "path": Field(str, "var/monitor.sqlite", non_empty),
    # Usually "${MONITOR_DSN}", so the password is not in the file.
    "dsn": Field(str, "", postgresql_dsn),
    "pool_size": Field(int, 4, between(1, 100)),
}
ANALYSIS_FIELDS = {
    "threads": Field(int, 1, at_least(1)),
    "workers": Field(int, 0, at_least(0)),
    "batch_size": Field(int, 500, at_least(1)),
    "crisis_words": Field(STRINGS, None),
    "complaint_words": Field(STRINGS, None),
    "purchase_intent_words": Field(STRINGS, None),
}
def tile_url(value: str) -> Optional[str]:
    """
    Check a map tile URL template: empty (no tiles), or http(s) with
    C{{z}}, C{{x}} and C{{y}}.
    """
    if value == "":
        return None
    if not value.startswith(("http://", "https://")) or not all(p in value for p in ("{z}", "{x}", "{y}")):
        return "must be empty or an http(s) URL template with {z}, {x} and {y}"
    return None


def scrypt_cost(value: int) -> Optional[str]:
    """
    Check C{[web] scrypt_n}: a power of two from 2**10 to 2**20.
    """
    if not 2**10 <= value <= 2**20 or value & (value - 1):
        return "must be a power of two from 1024 to 1048576 (131072, the default, is OWASP's minimum)"
    return None


def web_hosts(value: list) -> Optional[str]:
    """
    Check C{[web] hosts}: host names or addresses, each with an optional
    C{:port}, or C{"*"}.
    """
    from monitor.web.hosts import parse_host

    for entry in value:
        if entry != "*" and parse_host(entry) is None:
            return f"{entry!r} is not a host name or address with an optional :port, or \"*\""
    return None


WEB_FIELDS = {
    "endpoint": Field(str, "tcp:8080:interface=127.0.0.1", endpoint),
    "token_file": Field(str, "var/api-token", non_empty),
    "tile_url": Field(str, "", tile_url),
    "tile_attribution": Field(str, ""),
    "session_hours": Field(float, 12.0, at_least(0.05)),
    "cookie_secure": Field(bool, False),
    "ws_queue": Field(int, 1000, at_least(10)),
    "ws_interval": Field(float, 0.25, at_least(0.05)),
    "ws_stall_timeout": Field(float, 30.0, at_least(0)),
    "ws_ping_interval": Field(float, 20.0, at_least(0)),
    "access_log": Field(str, ""),
    "ws_max_message": Field(int, 16384, between(1024, 65536)),
    "ws_message_rate": Field(float, 2.0, at_least(0.01)),
    "ws_message_burst": Field(int, 20, at_least(1)),
    "max_body": Field(int, 16 * 1024, at_least(1024)),
    "max_fields": Field(int, 100, at_least(10)),
    "max_edit_body": Field(int, 1024 * 1024, at_least(1024)),
    "max_edit_fields": Field(int, 2000, at_least(10)),
    "ws_per_user": Field(int, 16, at_least(1)),
    "scrypt_n": Field(int, 2**17, scrypt_cost),
    "hosts": Field(STRINGS, None, web_hosts),
}
TOPIC_FIELDS = {
    "name": Field(str, check=non_empty),
    "terms": Field(STRINGS, []),
    "variants": Field(STRINGS, []),
    "fuzzy": Field(bool, False),
    "exclude": Field(STRINGS, []),
    "languages": Field(STRINGS, []),
    "sources": Field(STRINGS, []),
    "group": Field(str, None),
    "query": Field(str, ""),
}
SOURCE_COMMON = {
    "kind": Field(str),
    "name": Field(str, check=non_empty),
}

#: Per source kind, its own keys.  Collector modules add theirs with
#: L{register_source_kind}.
SOURCE_KINDS: dict[str, dict[str, Field]] = {}
#: Per source kind, an optional check of the whole table (keys that depend
#: on each other), giving (key, problem) pairs.
SOURCE_CHECKS: dict[str, Callable[[dict], list[tuple[str, str]]]] = {}


def register_source_kind(kind: str, fields: dict[str, Field], check=None) -> None:
    SOURCE_KINDS[kind] = fields
    if check is not None:
        SOURCE_CHECKS[kind] = check


#: A span of time, for Field.type: seconds as a number, or a string with a
#: unit ("90s", "5m", "2h", "1d").  Read it with L{parse_duration}.
DURATION = "duration"
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """
    Seconds in a L{DURATION} value.  Raises C{ValueError} if it is none.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value):
        number, unit = _DURATION.fullmatch(value).groups()
        seconds = float(number) * _UNITS[unit]
    else:
        raise ValueError(f"not a duration: {value!r}")
    if not 0 < seconds < 10 * 365 * 86400:
        raise ValueError(f"not a duration: {value!r}")
    return seconds


def duration(value: Any) -> Optional[str]:
    try:
        parse_duration(value)
    except ValueError:
        return f'must be a duration: seconds, or a string such as "90s", "5m", "2h", "1d" (not {value!r})'
    return None


def redis_url(value: str) -> Optional[str]:
    from monitor.queue.redis import parse_redis_url

    try:
        parse_redis_url(value)
    except ValueError as e:
        return str(e)
    return None


HUB_FIELDS = {
    "shutdown_timeout": Field(float, 8.0, at_least(0.1)),
    # This hub among several (its consumer name in the Redis queue); empty:
    # the host name and process id.
    "name": Field(str, ""),
    # With [queue] kind = "redis" (monitor.cluster): how long a collector's
    # or the alerts' lease, and a hub's heartbeat, last without renewal
    # (renewed every third of it): a dead hub's collectors move within it.
    "lease": Field(DURATION, "15s", duration),
    # The prefix of the cluster's Redis keys and channel: hubs on one Redis
    # with the same name are one cluster.
    "cluster": Field(str, "monitor", non_empty),
}
QUEUE_FIELDS = {
    "kind": Field(str, "memory", one_of("memory", "redis")),
    "size": Field(int, 10000, at_least(1)),
    # kind = "redis"
    "url": Field(str, "redis://127.0.0.1:6379/0", redis_url),
    "stream": Field(str, "monitor:posts", non_empty),
    "group": Field(str, "monitor", non_empty),
    "max_length": Field(int, 100000, at_least(1)),
    "claim_after": Field(DURATION, "30s", duration),
}
ALERTS_FIELDS = {
    "evaluate_every": Field(DURATION, "10s", duration),
    "samples": Field(int, 5, at_least(1)),
    "retry_max": Field(DURATION, "10m", duration),
    "give_up_after": Field(DURATION, "24h", duration),
    "live": Field(bool, True),
    "backfill_age": Field(DURATION, "1h", duration),
    "notify_backfill": Field(bool, False),
}

NODES_FIELDS = {
    "endpoint": Field(str, None, endpoint),
    "secret_file": Field(str, None, non_empty),
    "timeout": Field(float, 10.0, at_least(0.1)),
}

LEARNING_FIELDS = {
    "enabled": Field(bool, True),
    "min_examples": Field(int, 20, at_least(4)),
    "min_per_class": Field(int, 3, at_least(1)),
    "retrain_after": Field(int, 10, at_least(1)),
    "delay": Field(DURATION, "30s", duration),
    "folds": Field(int, 5, between(2, 10)),
    "auto_activate": Field(bool, True),
    # Corrections shipped with a configuration (monitor.learn.seed), loaded
    # into a store that has none: the demo's train a model at once.
    "seed": Field(str, ""),
}

STORIES_FIELDS = {
    # Off by default: it costs about 2x VADER per post, 1.5x of it on the
    # hub's event loop (bench/stories.py, bench/README.md).
    "enabled": Field(bool, False),
    "threshold": Field(float, 0.3, between(0.01, 1.0)),
    "half_life": Field(DURATION, "1h", duration),
    "fade_after": Field(DURATION, "6h", duration),
    "geo_weight": Field(float, 0.2, between(0.0, 1.0)),
    "max_stories": Field(int, 2000, at_least(10)),
}

SECTIONS = {
    "hub": HUB_FIELDS,
    "store": STORE_FIELDS,
    "queue": QUEUE_FIELDS,
    "analysis": ANALYSIS_FIELDS,
    "nodes": NODES_FIELDS,
    "web": WEB_FIELDS,
    "alerts": ALERTS_FIELDS,
    "learning": LEARNING_FIELDS,
    "stories": STORIES_FIELDS,
}


# --- the result ----------------------------------------------------------------


@dataclass
class Config:
    """
    A validated configuration: plain dicts of checked values per section,
    sources as dicts (with C{kind} and C{name}), topics as L{Topic}s.
    """

    path: str
    hub: dict[str, Any]
    store: dict[str, Any]
    queue: dict[str, Any]
    analysis: dict[str, Any]
    web: dict[str, Any]
    sources: list[dict[str, Any]] = field(default_factory=list)
    nodes: dict[str, Any] = field(default_factory=lambda: {k: f.default for k, f in NODES_FIELDS.items()})
    topics: list[Topic] = field(default_factory=list)
    alerts: dict[str, Any] = field(default_factory=lambda: {k: f.default for k, f in ALERTS_FIELDS.items()})
    learning: dict[str, Any] = field(default_factory=lambda: {k: f.default for k, f in LEARNING_FIELDS.items()})
    stories: dict[str, Any] = field(default_factory=lambda: {k: f.default for k, f in STORIES_FIELDS.items()})
    rules: list[dict[str, Any]] = field(default_factory=list)
    channels: list[dict[str, Any]] = field(default_factory=list)

    def resolve(self, path: str) -> str:
        """
        Resolve a path from the file relative to the directory the hub
        runs in (as given), leaving absolute paths alone.
        """
        return os.path.expanduser(path)


# --- loading -----------------------------------------------------------------------

_ENV = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: str, environ) -> tuple[str, list[str]]:
    """
    Substitute C{${NAME}} references; return the text and the missing names.
    """
    missing: list[str] = []

    def sub(m: re.Match) -> str:
        if m.group(1):
            return "${" + m.group(2) + "}"
        if m.group(2) not in environ:
            missing.append(m.group(2))
            return ""
        return environ[m.group(2)]

    return _ENV.sub(sub, value), missing


def _line_index(text: str) -> dict[str, int]:
    """
    Map dotted key paths (C{sources[1].speed}) to line numbers, for error
    messages.  Approximate: plain tables and arrays of tables only.
    """
    index: dict[str, int] = {}
    counts: dict[str, int] = {}
    prefix = ""
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        m = re.match(r"^\[\[\s*([\w.-]+)\s*\]\]", line)
        if m:
            name = m.group(1)
            counts[name] = counts.get(name, -1) + 1
            prefix = f"{name}[{counts[name]}]"
            index.setdefault(prefix, n)
            continue
        m = re.match(r"^\[\s*([\w.-]+)\s*\]", line)
        if m:
            prefix = m.group(1)
            index.setdefault(prefix, n)
            continue
        m = re.match(r'^([\w-]+|"[^"]*")\s*=', line)
        if m:
            key = m.group(1).strip('"')
            index.setdefault(f"{prefix}.{key}" if prefix else key, n)
    return index


def _check_topic(c: "_Checker", key: str, table: Any, source_names: set) -> Optional[dict]:
    """
    The checked keys of one topic table (problems reported on C{c}), or
    C{None} if its keys are wrong.
    """
    checked = c.table(key, TOPIC_FIELDS, table)
    if len(checked) != len(TOPIC_FIELDS):
        return None
    if checked["query"]:
        try:
            parse_query(checked["query"])
        except QueryError as e:
            c.problem(f"{key}.query", str(e))
    elif not checked["terms"] and not checked["variants"]:
        c.problem(f"{key}.terms", "a topic needs at least one term or variant, or a query")
    for other in checked["sources"]:
        if other not in source_names:
            c.problem(f"{key}.sources", f"names no configured source: {other!r}")
    return checked


def check_topic_spec(spec: Any, source_names: set) -> tuple[Optional[Topic], list[str]]:
    """
    Validate a topic sent to the API, with the rules of C{[[topics]]}:
    the topic and no problems, or C{None} and every problem, each naming
    its key (C{topic.query: at position 17: expected ...}).
    """
    from monitor.alerts.config import _LiteralChecker

    if not isinstance(spec, dict):
        return None, ["topic: must be a JSON object"]
    c = _LiteralChecker("", {})
    spec = {k: v for k, v in spec.items() if v is not None}
    checked = _check_topic(c, "topic", spec, source_names)
    if checked is None or c.problems:
        return None, c.problems
    return Topic.from_dict(checked), []


class _Checker:
    def __init__(self, text: str, environ) -> None:
        self.lines = _line_index(text)
        self.problems: list[str] = []
        self.environ = environ

    def where(self, key: str) -> str:
        probe = key
        while probe:
            if probe in self.lines:
                return f" (line {self.lines[probe]})"
            probe = probe.rpartition(".")[0]
        return ""

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{key}{self.where(key)}: {message}")

    def value(self, key: str, spec: Field, value: Any) -> Any:
        expected = spec.type
        if expected is STRINGS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                self.problem(key, "must be a list of strings")
                return _MISSING
            value = [self.expand(key, v) for v in value]
        elif expected is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.problem(key, f"must be a number, not {value!r}")
                return _MISSING
            value = float(value)
        elif expected is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self.problem(key, f"must be a whole number, not {value!r}")
                return _MISSING
        elif expected is bool:
            if not isinstance(value, bool):
                self.problem(key, f"must be true or false, not {value!r}")
                return _MISSING
        elif expected is str:
            if not isinstance(value, str):
                self.problem(key, f"must be a string, not {value!r}")
                return _MISSING
            value = self.expand(key, value)
        if spec.check is not None:
            message = spec.check(value)
            if message:
                self.problem(key, message)
                return _MISSING
        return value

    def expand(self, key: str, value: str) -> str:
        out, missing = _expand(value, self.environ)
        for name in missing:
            self.problem(key, f"environment variable {name} is not set")
        return out

    def array(self, name: str, data: dict) -> list[tuple[str, dict]]:
        """
        The tables of an array of tables (C{[[name]]}), each with its key
        for messages; anything else in the array is a problem.
        """
        raw = data.get(name, [])
        if not isinstance(raw, list):
            self.problem(name, f"must be an array of tables ([[{name}]])")
            return []
        out = []
        for i, table in enumerate(raw):
            if isinstance(table, dict):
                out.append((f"{name}[{i}]", table))
            else:
                self.problem(f"{name}[{i}]", "must be a table")
        return out

    def unique(self, key: str, checked: dict, seen: set, what: str) -> None:
        """
        Check that C{checked["name"]} was not used before in C{seen}.
        """
        name = checked.get("name")
        if name in seen:
            self.problem(f"{key}.name", f"duplicate {what} name {name!r}")
        seen.add(name)

    def table(self, key: str, specs: dict[str, Field], table: Any) -> dict[str, Any]:
        if not isinstance(table, dict):
            self.problem(key, "must be a table")
            return {}
        out: dict[str, Any] = {}
        for name in table:
            if name not in specs:
                allowed = ", ".join(sorted(specs))
                self.problem(f"{key}.{name}", f"unknown key (allowed here: {allowed})")
        for name, spec in specs.items():
            full = f"{key}.{name}"
            if name in table:
                v = self.value(full, spec, table[name])
                if v is not _MISSING:
                    out[name] = v
            elif spec.required:
                self.problem(full, "is required")
            else:
                out[name] = spec.default
        return out


def load_config(path: str, environ=None) -> Config:
    """
    Read and validate the configuration file at C{path}.  Raises
    L{ConfigError} listing every problem.
    """
    # Collectors register their kinds on import.
    import monitor.collect  # noqa: F401

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(path, [f"cannot read the file: {e.strerror}"])
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as e:
        raise ConfigError(path, [f"not UTF-8 text ({e})"])
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, [f"not valid TOML: {e}"])
    return parse_config(data, path, text, os.environ if environ is None else environ)


def parse_config(data: dict[str, Any], path: str = "<config>", text: str = "", environ=None) -> Config:
    """
    Validate already-parsed TOML data.
    """
    c = _Checker(text, os.environ if environ is None else environ)
    allowed = set(SECTIONS) | {"sources", "topics", "rules", "channels"}
    for name in data:
        if name not in allowed:
            c.problem(name, "unknown section (allowed: " + ", ".join(sorted(allowed)) + ")")
    sections = {name: c.table(name, specs, data.get(name, {})) for name, specs in SECTIONS.items()}

    sources = []
    names: set[str] = set()
    for key, s in c.array("sources", data):
        kind = s.get("kind")
        if kind not in SOURCE_KINDS:
            c.problem(f"{key}.kind", "must be one of " + ", ".join(repr(k) for k in sorted(SOURCE_KINDS)))
            continue
        checked = c.table(key, dict(SOURCE_COMMON, **SOURCE_KINDS[kind]), s)
        for name, message in SOURCE_CHECKS[kind](checked) if kind in SOURCE_CHECKS else ():
            c.problem(f"{key}.{name}", message)
        c.unique(key, checked, names, "source")
        sources.append(checked)

    topics = []
    topic_names: set[str] = set()
    for key, t in c.array("topics", data):
        checked = _check_topic(c, key, t, names)
        if checked is None:
            continue
        c.unique(key, checked, topic_names, "topic")
        topics.append(Topic.from_dict(checked))

    # Alert rules and channels: their keys live with the alerts.
    from monitor.alerts.config import check_alerts

    rules, channels = check_alerts(c, data, topic_names, names)

    from monitor.nodes.secret import secret_problem

    problem = secret_problem(sections["nodes"], c.environ)
    if problem:
        c.problem(*problem)
    store = sections["store"]
    if store.get("kind") == "postgresql" and "dsn" in store and not store["dsn"]:
        c.problem("store.dsn", 'is required with kind = "postgresql" (e.g. dsn = "${MONITOR_DSN}")')

    if c.problems:
        raise ConfigError(path, c.problems)
    return Config(path=path, sources=sources, topics=topics, rules=rules, channels=channels, **sections)
