"""
Shared fixtures.  pytest-twisted installs one reactor for the session; the
C{reactor} fixture hands it to tests without a module-level import.
"""

import os
import pathlib

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = pathlib.Path(os.environ.get("MONITOR_SHARED", ROOT.parent / "shared"))


@pytest.fixture
def reactor():
    from twisted.internet import reactor as _reactor

    return _reactor


@pytest.fixture
def shared_data():
    """
    The labelled real posts in ../shared/data.
    """
    path = SHARED / "data"
    assert path.is_dir(), f"shared data not found at {path}"
    return path
