"""
The hub's object graph, assembled (not started) from a configuration:
the web part receives its collaborators, never the hub, and nothing
reaches the hub through it (the service tree's C{parent} aside); the
parts are wired where the hub says so.
"""

import functools
import types
from collections import deque

import pytest
from twisted.internet.task import Clock

from monitor.bus import ALERT, STATUS, STORED
from monitor.config import parse_config
from monitor.hub import Hub


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("MONITOR_API_TOKEN", "t0ken")
    config = parse_config(
        {
            "store": {"path": str(tmp_path / "monitor.sqlite")},
            "sources": [{"kind": "replay", "name": "inbox", "path": str(tmp_path / "inbox.jsonl")}],
            "topics": [{"name": "Acme", "terms": ["acme"]}],
        },
        path=str(tmp_path / "monitor.toml"),
    )
    return Hub(config, reactor=Clock())


def _reachable(start):
    """
    Every object reachable from C{start} through the monitor's own objects:
    their attributes (but C{parent}, the service tree), containers, bound
    methods, partials and closures.
    """
    seen, todo = set(), [start]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, type, types.ModuleType)) or obj is None:
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, dict):
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset, deque)):
            todo.extend(obj)
        elif isinstance(obj, functools.partial):
            todo.extend([obj.func, *obj.args, *obj.keywords.values()])
        elif isinstance(obj, types.MethodType):
            todo.append(obj.__self__)
        elif isinstance(obj, types.FunctionType):
            for cell in obj.__closure__ or ():
                try:
                    todo.append(cell.cell_contents)
                except ValueError:
                    pass
        elif type(obj).__module__.startswith("monitor.") and hasattr(obj, "__dict__"):
            todo.extend(value for name, value in vars(obj).items() if name != "parent")


def test_the_web_part_does_not_hold_the_hub(hub):
    """From the port, the API, the pages, the live channel and the status service, the hub is out of reach."""
    for part in (hub.web, hub.api, hub.web.ui, hub.push, hub.status):
        assert not any(obj is hub for obj in _reachable(part)), part


def test_the_walk_would_find_the_hub():
    """The check above can fail: a closure or a partial over the hub is found."""
    hub = object()

    class Part:
        __module__ = "monitor.example"

        def __init__(self, listener):
            self.listeners = [listener]

    assert any(obj is hub for obj in _reachable(Part(lambda: hub)))
    assert any(obj is hub for obj in _reachable(Part(functools.partial(print, hub))))


def test_the_parts_are_wired_by_the_hub(hub):
    """The tokens made on the admin page count for the API; the live channel hears the bus."""
    assert hub.api.auth.stored is hub.users
    assert hub.web.users is hub.users and hub.web.push is hub.push
    assert hub.web.ui.areas["sources"].status is hub.status
    for event in (STORED, ALERT, STATUS):
        assert hub.bus.listeners(event) >= 1, event
    # The status service starts before the port opens, and runs by itself.
    children = list(hub)
    assert children.index(hub.status) < children.index(hub.web)
    assert hub.status.snapshot()["sources"] == [dict(hub.sources[0].status(), hub=hub.cluster.hub_name)]
