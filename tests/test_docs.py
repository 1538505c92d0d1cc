"""
The manual in docs/ is the reference of public contracts: it must build, and
it must say exactly what the code accepts.  These tests read the pages'
tables and compare them with the loader's and the API's own definitions, so
a key or a route cannot be added, renamed or removed without the manual.
"""

import io
import re

import docutils.core
import docutils.nodes
import pytest
from docutils.parsers.rst import roles

from tests.conftest import ROOT

DOCS = ROOT / "docs"


def _sphinx_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """Sphinx's cross-reference roles, as plain text for docutils alone."""
    return [docutils.nodes.literal(rawtext, text)], []


for _role in ("doc", "ref"):
    roles.register_local_role(_role, _sphinx_role)


def doctree(page: str):
    warnings = io.StringIO()
    tree = docutils.core.publish_doctree(
        (DOCS / page).read_text(encoding="utf-8"),
        settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": warnings},
    )
    assert warnings.getvalue() == "", warnings.getvalue()
    return tree


def sections(tree):
    """(title, section) for every section of the page, at any depth."""
    for section in tree.findall(docutils.nodes.section):
        yield section[0].astext(), section


def own_table_keys(section) -> set[str]:
    """
    The keys in the first column of the tables of this section itself (not
    of its subsections): each a literal such as ``name``.
    """
    keys = set()
    for table in section.findall(docutils.nodes.table):
        parent = table.parent
        while not isinstance(parent, docutils.nodes.section):
            parent = parent.parent
        if parent is not section:
            continue
        for row in table.findall(docutils.nodes.row):
            if isinstance(row.parent, docutils.nodes.thead):
                continue
            first = row[0]
            keys.update(lit.astext() for lit in first.findall(docutils.nodes.literal))
    return keys


def test_docs_build_with_sphinx_without_warnings(tmp_path):
    """``make docs`` (sphinx-build -W) succeeds: no broken link, heading or table."""
    from sphinx.cmd.build import build_main

    out = io.StringIO()
    status = build_main(["-W", "-q", "-b", "html", "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")])
    assert status == 0, out.getvalue()
    assert (tmp_path / "html" / "configuration.html").exists()


def _documented_config():
    """{scope title: keys documented in its tables} from docs/configuration.rst."""
    return {title: own_table_keys(section) for title, section in sections(doctree("configuration.rst"))}


def _code_scopes():
    """
    {(parent title, title): the keys the loader accepts there}, covering
    every section, source kind, rule type and channel kind.
    """
    from monitor.config import SCHEMA

    scopes = {}
    for name, section in SCHEMA.items():
        title = f"[[{name}]]" if section.array else f"[{name}]"
        if not section.kinds:
            scopes[(None, title)] = set(section.fields)
            continue
        # A key every kind has may be documented once, with the common keys.
        common = set(section.fields)
        scopes[(None, title)] = common | set.intersection(*(set(f) for f in section.kinds.values()))
        for kind, fields in section.kinds.items():
            scopes[(title, f'{section.kind_key} = "{kind}"')] = set(fields) | common
    return scopes


def test_every_config_key_is_documented_and_every_documented_key_exists():
    """
    Each table of docs/configuration.rst lists exactly the keys the loader
    accepts in its section, source kind, rule type or channel kind.
    """
    tree = doctree("configuration.rst")
    documented = {}
    for title, section in sections(tree):
        parent = section.parent
        parent_title = parent[0].astext() if isinstance(parent, docutils.nodes.section) else None
        if parent_title == "Configuration":
            parent_title = None
        documented[(parent_title, title)] = own_table_keys(section)
    code = _code_scopes()
    problems = []
    for scope, keys in code.items():
        if scope not in documented:
            problems.append(f"{scope}: not documented (a section titled {scope[1]!r})")
            continue
        shown = documented[scope]
        if scope[0] is not None:
            shown = shown | documented[(None, scope[0])]
        for key in sorted(keys - shown):
            problems.append(f"{scope[1]}: key {key!r} is accepted but not documented")
        for key in sorted(shown - keys):
            problems.append(f"{scope[1]}: key {key!r} is documented but not accepted")
    for scope in documented:
        if re.fullmatch(r"\[\[?\w+\]\]?|\w+ = \"\w+\"", scope[1]) and scope not in code:
            problems.append(f"{scope[1]}: documented but the loader knows no such section or kind")
    assert problems == []


_PLACEHOLDER = re.compile(r"<[^>]+>|\b[A-Z][A-Z_]+\b")


def _normal(path: str) -> str:
    return _PLACEHOLDER.sub("*", path)


def test_every_api_route_is_documented_and_every_documented_route_exists():
    """docs/api.rst names each route of monitor/web/api.py, with its method, and no other."""
    from monitor.web.api import Api

    code = set()
    for rule in Api.app.url_map.iter_rules():
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            code.add(f"{method} {_normal(rule.rule)}")
    tree = doctree("api.rst")
    documented = set()
    for term in tree.findall(docutils.nodes.term):
        for method, path in re.findall(r"\b(GET|POST|PUT|DELETE|PATCH) (/\S+)", term.astext()):
            documented.add(f"{method} {_normal(path.rstrip(','))}")
    assert sorted(code - documented) == [], "routes without documentation"
    assert sorted(documented - code) == [], "documented routes that do not exist"


@pytest.mark.parametrize(
    "page, module",
    [("running.rst", "monitor.tap"), ("nodes.rst", "monitor.nodes.node_tap")],
)
def test_every_command_line_option_is_documented(page, module):
    """Every option of ``twistd monitor`` and ``twistd monitor-node`` is a term of its page."""
    import importlib

    options = importlib.import_module(module).Options
    names = {p[0] for p in getattr(options, "optParameters", [])} | {f[0] for f in getattr(options, "optFlags", [])}
    terms = " ".join(t.astext() for t in doctree(page).findall(docutils.nodes.term))
    documented = set(re.findall(r"--([a-z][a-z-]*)", terms))
    assert sorted(names - documented) == [], "options without documentation"
    assert sorted(documented - names) == [], "documented options that do not exist"
