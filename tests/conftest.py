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


_exit_status = {}


def pytest_sessionfinish(session, exitstatus):
    _exit_status["value"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """
    A thread some test left running (a pool never stopped) would keep the
    interpreter alive after the summary, and CI would wait for it until its
    time limit.  Once pytest-twisted has stopped the reactor, give such
    threads a few seconds, then name them and exit with the tests' status.
    """
    import sys
    import threading
    import time

    deadline = time.monotonic() + 5

    def stragglers():
        return [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]

    for thread in stragglers():
        thread.join(max(0.0, deadline - time.monotonic()))
    left = stragglers()
    if left:
        names = ", ".join(sorted(t.name for t in left))
        sys.stderr.write(f"\nwarning: threads still running after the last test, not waited for: {names}\n")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(_exit_status.get("value", 1))
