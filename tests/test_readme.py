"""
README.rst is the entry point: it must render, open with the quickstart, keep the commands the
project promises and lead to every page of the manual in docs/.
"""

import io

import docutils.core

from tests.conftest import ROOT


def test_readme_renders_without_warnings():
    """docutils parses README.rst with no warning or error (tables, literals, lists)."""
    warnings = io.StringIO()
    docutils.core.publish_doctree(
        (ROOT / "README.rst").read_text(encoding="utf-8"),
        settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": warnings},
    )
    assert warnings.getvalue() == ""


def test_readme_gives_the_set_up_commands():
    """The README names make run, make demo and make test, as CI and users rely on."""
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    for command in ("``make run``", "``make demo``", "``make test``"):
        assert command in text


def test_readme_opens_with_the_quickstart():
    """The first screen (40 lines) is the quickstart: its one command and the address."""
    first_screen = "\n".join((ROOT / "README.rst").read_text(encoding="utf-8").splitlines()[:40])
    assert "\nQuickstart\n==========\n" in first_screen
    assert "\n    make run\n" in first_screen
    assert "http://127.0.0.1:8080/" in first_screen


def test_readme_links_to_every_page_of_the_manual():
    """README.rst stays the entry point: it links each page of docs/, and each link exists."""
    import re

    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    linked = set(re.findall(r"<(docs/[\w.-]+\.rst)>`_", text))
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.rst")} - {"docs/index.rst"}
    assert linked == pages
