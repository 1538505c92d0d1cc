"""
README.rst is the users' manual: it must render, and keep the commands the
project promises.
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
