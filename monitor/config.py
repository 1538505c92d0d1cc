"""
The configuration file: one TOML document, validated as a whole before the
reactor starts.  This module is its schema: L{SCHEMA} declares every
section once, with each key's type, default and check (the keys of a
source kind come from L{monitor.collect.kinds}, those of rules from
L{monitor.alerts.rules} and of channels from L{monitor.alerts.config}), and
a checked L{Config} has every key.  Each plain table is a typed, frozen
section made from the schema (L{HubSection}, L{StoreSection}, ...): read
C{config.store.path}, or C{config.store["path"]} as before.

Every problem is collected and reported at once, each naming its key (and the
line it is on), because a user fixing a config file one error per restart is
a user lost.  Unknown keys are errors: a typo must not be silently ignored.

String values may refer to environment variables as C{${NAME}} (C{$${} is a
literal C{${}), so secrets need not be written into the file.
"""

from __future__ import annotations

import os
import tomllib
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Union

from monitor.alerts.config import CHANNEL_COMMON, CHANNEL_KINDS, RULE_COMMON, RULE_FIELDS, check_alerts
from monitor.collect.kinds import SOURCE_COMMON, SOURCE_KINDS as _KINDS
from monitor.fields import (
    DURATION,
    MISSING,
    STRINGS,
    Checker,
    Field,
    LiteralChecker,
    at_least,
    between,
    duration,
    endpoint,
    http_url,
    non_empty,
    one_of,
    parse_duration,
    url_check,
)
from monitor.model import Topic
from monitor.query import QueryError, parse as parse_query

__all__ = [
    "DURATION",
    "MISSING",
    "AlertsSection",
    "AnalysisSection",
    "HubSection",
    "LearningSection",
    "NodesSection",
    "QueueSection",
    "SCHEMA",
    "SECTIONS",
    "SECTION_TYPES",
    "SectionTable",
    "StoriesSection",
    "StoreSection",
    "WebSection",
    "SOURCE_COMMON",
    "SOURCE_KINDS",
    "STRINGS",
    "Checker",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "Field",
    "Section",
    "LiteralChecker",
    "at_least",
    "between",
    "check_topic_spec",
    "default",
    "defaults",
    "duration",
    "endpoint",
    "http_url",
    "load_config",
    "non_empty",
    "one_of",
    "parse_config",
    "section_type",
    "parse_duration",
    "url_check",
]


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
    # With kind = "postgresql" too: accounts and learning stay here.
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
            return f'{entry!r} is not a host name or address with an optional :port, or "*"'
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

#: Per source kind, its own keys (the kinds are listed in
#: L{monitor.collect.kinds}).
SOURCE_KINDS: dict[str, dict[str, Field]] = {kind: k.fields for kind, k in _KINDS.items()}
#: Per source kind with one, its check of the whole table.
SOURCE_CHECKS = {kind: k.check for kind, k in _KINDS.items() if k.check is not None}


def redis_url(value: str) -> Optional[str]:
    from monitor.queue.address import parse_redis_url

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


@dataclass(frozen=True)
class Section:
    """
    One part of the file: a table (C{[web]}) or an array of tables
    (C{[[sources]]}).  C{fields} are the keys of the table, or the keys
    every table of the array has; an array whose tables differ by a key
    (C{kind_key}: C{kind} or C{type}) has each kind's own keys in C{kinds}.
    """

    name: str
    fields: dict[str, Field]
    array: bool = False
    kind_key: str = ""
    kinds: dict[str, dict[str, Field]] = field(default_factory=dict)

    def defaults(self) -> dict[str, Any]:
        """
        The table with every key that has a default at it.
        """
        return {k: f.default for k, f in self.fields.items() if not f.required}


#: The whole configuration file, section by section: the one place each
#: key, its type and its default are written.
SCHEMA: dict[str, Section] = {
    s.name: s
    for s in (
        Section("hub", HUB_FIELDS),
        Section("store", STORE_FIELDS),
        Section("queue", QUEUE_FIELDS),
        Section("analysis", ANALYSIS_FIELDS),
        Section("nodes", NODES_FIELDS),
        Section("web", WEB_FIELDS),
        Section("alerts", ALERTS_FIELDS),
        Section("learning", LEARNING_FIELDS),
        Section("stories", STORIES_FIELDS),
        Section("sources", SOURCE_COMMON, array=True, kind_key="kind", kinds=SOURCE_KINDS),
        Section("topics", TOPIC_FIELDS, array=True),
        Section("rules", RULE_COMMON, array=True, kind_key="type", kinds=RULE_FIELDS),
        Section("channels", CHANNEL_COMMON, array=True, kind_key="kind", kinds=CHANNEL_KINDS),
    )
}

#: The plain tables, by name, with their keys.
SECTIONS: dict[str, dict[str, Field]] = {name: s.fields for name, s in SCHEMA.items() if not s.array}


# --- the typed sections --------------------------------------------------------


class SectionTable(Mapping):
    """
    A checked plain table (C{[store]}, C{[web]}, ...): each key an
    attribute of its type, frozen, and the table a read-only mapping as
    well (C{section["path"]}, C{get}, C{items}, C{dict(section)}, equal to
    a dict of the same items), so code written for the dicts these were
    keeps working.  The classes are made from L{SCHEMA} by
    L{section_type}: a key, its type and its default are written there only.
    """

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)


def _annotation(f: Field) -> Any:
    kind = Union[str, int, float] if f.type == DURATION else f.type
    return Optional[kind] if f.default is None else kind


def section_type(section: Section) -> type:
    """
    The frozen dataclass of one plain section: a field per key, with the
    key's type and default (a list default is copied for each instance),
    and a docstring listing the keys.
    """
    specs = []
    lines = [f"The C{{[{section.name}]}} table, checked (made from L{{SCHEMA}}).", ""]
    for key, f in section.fields.items():
        if hasattr(SectionTable, key):
            raise ValueError(f"[{section.name}] {key}: the name of a mapping method, so not an attribute")
        if f.required:
            spec = field()
        elif isinstance(f.default, list):
            spec = field(default_factory=list(f.default).copy)
        else:
            spec = field(default=f.default)
        specs.append((key, _annotation(f), spec))
        shown = "required" if f.required else f"default {f.default!r}"
        lines.append(f"@ivar {key}: {f.doc or ''} ({shown})".replace(":  (", ": ("))
    cls = dataclasses.make_dataclass(
        section.name.capitalize() + "Section",
        specs,
        bases=(SectionTable,),
        frozen=True,
        eq=False,
        kw_only=True,
    )
    # Where the module assigns it, so that it pickles and documents there.
    cls.__module__ = __name__
    cls.__doc__ = "\n".join(lines)
    return cls


HubSection = section_type(SCHEMA["hub"])
StoreSection = section_type(SCHEMA["store"])
QueueSection = section_type(SCHEMA["queue"])
AnalysisSection = section_type(SCHEMA["analysis"])
NodesSection = section_type(SCHEMA["nodes"])
WebSection = section_type(SCHEMA["web"])
AlertsSection = section_type(SCHEMA["alerts"])
LearningSection = section_type(SCHEMA["learning"])
StoriesSection = section_type(SCHEMA["stories"])

#: The class of each plain section, by name.
SECTION_TYPES: dict[str, type] = {
    "hub": HubSection,
    "store": StoreSection,
    "queue": QueueSection,
    "analysis": AnalysisSection,
    "nodes": NodesSection,
    "web": WebSection,
    "alerts": AlertsSection,
    "learning": LearningSection,
    "stories": StoriesSection,
}


def default(section: str, key: str) -> Any:
    """
    One key's default as the parts take it (a duration in seconds), for a
    constructor's keyword argument: the default stays written once, here.
    """
    f = SCHEMA[section].fields[key]
    return parse_duration(f.default) if f.type == DURATION and f.default is not None else f.default


def defaults(name: str) -> dict[str, Any]:
    """
    The table C{[name]} with every key at its default, as a file without
    it gives.
    """
    return SCHEMA[name].defaults()


# --- the result ----------------------------------------------------------------


@dataclass
class Config:
    """
    A validated configuration: a typed section per plain table (L{HubSection},
    L{StoreSection}, ...: attributes, and subscripts as the dicts they were),
    sources as dicts (with C{kind} and C{name}), topics as L{Topic}s.

    Every key of a section is there, at its default if the file left it
    out (a section built by hand, as a dict, is completed from L{SCHEMA}),
    so readers use it (C{config.web.ws_queue}) and never write a default
    again.
    """

    path: str
    hub: HubSection = field(default_factory=HubSection)
    store: StoreSection = field(default_factory=StoreSection)
    queue: QueueSection = field(default_factory=QueueSection)
    analysis: AnalysisSection = field(default_factory=AnalysisSection)
    web: WebSection = field(default_factory=WebSection)
    sources: list[dict[str, Any]] = field(default_factory=list)
    nodes: NodesSection = field(default_factory=NodesSection)
    topics: list[Topic] = field(default_factory=list)
    alerts: AlertsSection = field(default_factory=AlertsSection)
    learning: LearningSection = field(default_factory=LearningSection)
    stories: StoriesSection = field(default_factory=StoriesSection)
    rules: list[dict[str, Any]] = field(default_factory=list)
    channels: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, cls in SECTION_TYPES.items():
            given = getattr(self, name)
            if not isinstance(given, cls):
                setattr(self, name, cls(**given))

    def resolve(self, path: str) -> str:
        """
        Resolve a path from the file relative to the directory the hub
        runs in (as given), leaving absolute paths alone.
        """
        return os.path.expanduser(path)


# --- loading -----------------------------------------------------------------------


def _check_topic(c: Checker, key: str, table: Any, source_names: set) -> Optional[dict]:
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
    if not isinstance(spec, dict):
        return None, ["topic: must be a JSON object"]
    c = LiteralChecker()
    spec = {k: v for k, v in spec.items() if v is not None}
    checked = _check_topic(c, "topic", spec, source_names)
    if checked is None or c.problems:
        return None, c.problems
    return Topic.from_dict(checked), []


def load_config(path: str, environ=None) -> Config:
    """
    Read and validate the configuration file at C{path}.  Raises
    L{ConfigError} listing every problem.
    """
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
    c = Checker(text, os.environ if environ is None else environ)
    allowed = set(SCHEMA)
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
        for name, message in _KINDS[kind].check(checked) if _KINDS[kind].check else ():
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

    # Alert rules and channels: their checks live with the alerts.
    rules, channels = check_alerts(c, data, topic_names, names, sections["alerts"].get("live") is True)

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
