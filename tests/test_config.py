"""
The configuration loader: valid files load, and every problem in a bad one
is reported at once, naming its key and line.
"""

import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config import ConfigError, load_config, parse_config

ROOT = pathlib.Path(__file__).resolve().parent.parent

ISSUE_EXAMPLE = """
[store]
kind = "sqlite"            # embedded default
path = "var/monitor.sqlite"

[web]
endpoint = "tcp:8080:interface=127.0.0.1"

[[sources]]
kind = "replay"
name = "archive"
path = "posts.jsonl"
speed = 0

[[topics]]
name = "Acme"
terms = ["acme", "@acmesupport", "#acme", "\\"acme cloud\\""]
variants = ["acmee", "acne cloud"]
fuzzy = true
exclude = ["acme anvil museum"]
languages = ["en"]
group = "cloud vendors"
"""


def write(tmp_path, text):
    p = tmp_path / "monitor.toml"
    p.write_text(text, encoding="utf-8")
    return str(p)


def test_issue_example_loads(tmp_path):
    """The documented example configuration is valid and keeps every value."""
    c = load_config(write(tmp_path, ISSUE_EXAMPLE))
    assert c.store == {"kind": "sqlite", "path": "var/monitor.sqlite", "dsn": "", "pool_size": 4}
    assert c.web["endpoint"] == "tcp:8080:interface=127.0.0.1"
    assert c.sources == [
        {"kind": "replay", "name": "archive", "path": "posts.jsonl", "speed": 0.0, "network": None, "follow": False}
    ]
    (t,) = c.topics
    assert t.name == "Acme"
    assert t.terms == ("acme", "@acmesupport", "#acme", '"acme cloud"')
    assert t.fuzzy is True and t.languages == ("en",) and t.group == "cloud vendors"
    assert c.queue == {
        "kind": "memory",
        "size": 10000,
        "url": "redis://127.0.0.1:6379/0",
        "stream": "monitor:posts",
        "group": "monitor",
        "max_length": 100000,
        "claim_after": "30s",
    }


@pytest.mark.parametrize("name", ["monitor.toml", "demo.toml"])
def test_shipped_configs_load(name):
    """The sample configurations in etc/ are valid."""
    c = load_config(str(ROOT / "etc" / name))
    assert c.topics


def test_every_problem_reported_with_key_and_line(tmp_path):
    """A file with several mistakes lists them all, each with key and line."""
    text = """[store]
kind = "sqlite"
pathh = "x.sqlite"

[queue]
size = "big"

[[sources]]
kind = "replay"
name = "a"
speed = -1

[[topics]]
name = "Acme"
terms = "acme"
"""
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    problems = e.value.problems
    assert "store.pathh (line 3): unknown key (allowed here: dsn, kind, path, pool_size)" in problems
    assert "queue.size (line 6): must be a whole number, not 'big'" in problems
    assert "sources[0].path (line 8): is required" in problems
    assert "sources[0].speed (line 11): must be at least 0" in problems
    assert "topics[0].terms (line 15): must be a list of strings" in problems
    assert len(problems) == 5
    assert "5 problem(s)" in str(e.value)


def test_unknown_section_and_source_kind(tmp_path):
    """Typos in section names and source kinds are errors, not ignored."""
    text = '[stroe]\nkind = "sqlite"\n[[sources]]\nkind = "twitter"\nname = "x"\n'
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert any(p.startswith("stroe (line 1): unknown section") for p in e.value.problems)
    assert any(p.startswith("sources[0].kind (line 4): must be one of") for p in e.value.problems)


def test_duplicate_names_and_unknown_source_reference(tmp_path):
    """Two sources or topics of one name, or a topic naming no source, are errors."""
    text = """
[[sources]]
kind = "demo"
name = "d"
[[sources]]
kind = "demo"
name = "d"
[[topics]]
name = "A"
terms = ["a"]
sources = ["nope"]
[[topics]]
name = "A"
terms = []
"""
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    p = e.value.problems
    assert any("duplicate source name 'd'" in x for x in p)
    assert any("names no configured source: 'nope'" in x for x in p)
    assert any("duplicate topic name 'A'" in x for x in p)
    assert any("topics[1].terms" in x and "at least one term" in x for x in p)


def test_bad_endpoint(tmp_path):
    """An endpoint string Twisted cannot parse is reported with the key."""
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, '[web]\nendpoint = "carrier-pigeon:8080"\n'))
    assert e.value.problems[0].startswith("web.endpoint (line 2): is not a valid Twisted endpoint")


def test_environment_variables(tmp_path):
    """${NAME} takes a value from the environment; a missing one is an error naming the key."""
    path = write(tmp_path, '[store]\npath = "${DATA}/m.sqlite"\n[web]\ntoken_file = "$${literal}"\n')
    c = load_config(path, environ={"DATA": "/srv"})
    assert c.store["path"] == "/srv/m.sqlite"
    assert c.web["token_file"] == "${literal}"
    with pytest.raises(ConfigError) as e:
        load_config(path, environ={})
    assert e.value.problems == ["store.path (line 2): environment variable DATA is not set"]


def test_not_toml_and_missing_file(tmp_path):
    """Broken TOML and unreadable files give one clear problem."""
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "[store\n"))
    assert e.value.problems[0].startswith("not valid TOML")
    with pytest.raises(ConfigError) as e:
        load_config(str(tmp_path / "missing.toml"))
    assert e.value.problems[0].startswith("cannot read the file")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["store", "queue", "web", "sources", "topics", "analysis", "x"]), json_values))
def test_fuzz_never_crashes(data):
    """Any parsed TOML shape either validates or raises ConfigError, nothing else."""
    try:
        parse_config(data)
    except ConfigError as e:
        assert e.problems


def test_topic_query(tmp_path):
    """
    A topic may have a query instead of terms, or both; a query that does not
    parse is reported with its key, line, position and what was expected.
    """
    text = """
[[topics]]
name = "Refunds"
query = '(acme OR @acmesupport) AND (refund OR "charged twice") NOT giveaway'
[[topics]]
name = "Both"
terms = ["acme"]
query = "outage NEAR/3 down"
"""
    c = load_config(write(tmp_path, text))
    assert [(t.name, t.terms, t.query) for t in c.topics] == [
        ("Refunds", (), '(acme OR @acmesupport) AND (refund OR "charged twice") NOT giveaway'),
        ("Both", ("acme",), "outage NEAR/3 down"),
    ]
    bad = '[[topics]]\nname = "Bad"\nquery = "acme AND (refund"\n'
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, bad))
    assert e.value.problems == [
        "topics[0].query (line 3): at position 17: expected a ) to close the ( at position 10, found the end of the query"
    ]


def test_sections_are_complete_and_defaults_written_once():
    """
    A file without a section gives every key of it at its default, and a
    Config built by hand is completed from the same schema, so no reader
    needs a default of its own.
    """
    from monitor.config import SCHEMA, SECTIONS, Config, defaults

    cfg = parse_config({})
    for name, fields in SECTIONS.items():
        assert getattr(cfg, name) == defaults(name)
        assert set(defaults(name)) == {k for k, f in fields.items() if not f.required}
    assert cfg.web["ws_queue"] == 1000 and cfg.store["kind"] == "sqlite" and cfg.alerts["live"] is True
    built = Config(path="x", web={"ws_queue": 50})
    assert built.web["ws_queue"] == 50 and built.web["ws_interval"] == 0.25
    assert built.learning == defaults("learning")
    # Every part of the file is in the schema, and nothing else is allowed.
    assert set(SCHEMA) == set(SECTIONS) | {"sources", "topics", "rules", "channels"}
    with pytest.raises(ConfigError) as e:
        parse_config({"webb": {}})
    assert "webb: unknown section (allowed: " + ", ".join(sorted(SCHEMA)) + ")" in e.value.problems


def test_sections_are_typed_frozen_and_still_mappings(tmp_path):
    """
    Each plain section is a frozen dataclass made from the schema (its keys
    as typed attributes, their defaults the schema's), and a read-only
    mapping as the dicts were: subscripts, get, items, dict(), equality.
    """
    import dataclasses
    import pickle
    import typing

    from monitor.config import SECTION_TYPES, SECTIONS, StoreSection, WebSection

    path = tmp_path / "m.toml"
    path.write_text('[store]\npath = "x.sqlite"\n[web]\nws_queue = 50\n')
    cfg = load_config(str(path))
    assert isinstance(cfg.store, StoreSection) and isinstance(cfg.web, WebSection)
    assert cfg.store.path == cfg.store["path"] == "x.sqlite" and cfg.web.ws_queue == 50
    assert cfg.store.get("path") == "x.sqlite" and cfg.store.get("nope", 1) == 1 and "dsn" in cfg.store
    assert dict(cfg.store) == {"kind": "sqlite", "path": "x.sqlite", "dsn": "", "pool_size": 4} == cfg.store
    assert {**cfg.web}["ws_queue"] == 50 and pickle.loads(pickle.dumps(cfg.web)) == cfg.web
    with pytest.raises(KeyError):
        cfg.store["nope"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.store.path = "y"
    for name, fields in SECTIONS.items():
        cls = SECTION_TYPES[name]
        hints = typing.get_type_hints(cls)
        assert [f.name for f in dataclasses.fields(cls)] == list(fields), name
        for key, field in fields.items():
            assert key in cls.__doc__
            if not field.required:
                assert getattr(cls(), key) == field.default, (name, key)
            if field.type in (str, int, float, bool) and field.default is not None:
                assert hints[key] is field.type, (name, key)
    # A key the schema does not have is refused, even by hand.
    with pytest.raises(TypeError):
        StoreSection(nope=1)


def test_checked_values_fill_the_sections(tmp_path):
    # What the file gives replaces the default; the rest stay.
    path = tmp_path / "m.toml"
    path.write_text("[web]\nws_queue = 50\n[learning]\nfolds = 3\n")
    cfg = load_config(str(path))
    assert cfg.web["ws_queue"] == 50 and cfg.web["max_body"] == 16 * 1024
    assert cfg.learning["folds"] == 3 and cfg.learning["min_examples"] == 20
