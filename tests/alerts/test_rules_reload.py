"""
Rules saved by another hub on a shared store: the engine re-reads them on
its timer (the safety net behind the cluster's change notices, tested on
real hubs in tests/store/test_postgresql_hubs.py), rebuilding only what
changed; an engine whose store is its own never re-reads.
"""

from twisted.internet.defer import ensureDeferred

from monitor.alerts.engine import RULES_EVERY
from monitor.cluster import SoloCluster
from tests.alerts.helpers import T0, make_engine, post
from tests.alerts.test_engine import CRISIS, clock_at, result

RECALL = {"name": "recall", "type": "keyword", "phrases": ["product recall"], "topics": ["Acme"]}


def incidents(e, rule):
    return e.store.store.rows("SELECT state, resolved_by FROM alert_incidents WHERE rule = ?", rule)


def test_rules_saved_elsewhere_are_read_again_every_rules_every():
    """Saved in the store behind the engine's back: in force after RULES_EVERY; deleted: gone, its incident resolved."""
    clock = clock_at()
    # Peers that never send a notice: only the timer can tell.
    e = make_engine(clock, [CRISIS], peers=SoloCluster("hub-a", clock))
    crisis = e.rules["crisis"]
    result(e.store.save_rule("recall", RECALL, "web", clock.seconds()))
    clock.advance(RULES_EVERY - 1)
    assert set(e.rules) == {"crisis"}
    clock.advance(1)
    assert set(e.rules) == {"crisis", "recall"}
    assert e.rules["crisis"] is crisis  # unchanged: not rebuilt

    e.posts_stored([post(1, T0 + 40, text="acme announces a product recall")])
    clock.advance(0)
    assert incidents(e, "recall") == [("open", None)]

    result(e.store.delete_rule("recall"))
    clock.advance(RULES_EVERY)
    assert set(e.rules) == {"crisis"} and e.rules["crisis"] is crisis
    assert incidents(e, "recall") == [("resolved", "rule deleted")]
    e.posts_stored([post(2, T0 + 50, text="another product recall at acme")])
    clock.advance(0)
    assert incidents(e, "recall") == [("resolved", "rule deleted")]
    assert result(e.reload_rules()) == []  # nothing changed since
    e.stopService()


def test_a_rule_saved_here_is_not_rebuilt_when_read_back():
    """The rule this engine saved reads back the same: the next reading rebuilds nothing."""
    clock = clock_at()
    e = make_engine(clock, [CRISIS], peers=SoloCluster("hub-a", clock))
    saved = result(ensureDeferred(e.save_rule(dict(RECALL, cooldown="5m", severity="warning"), create=True)))
    assert result(e.reload_rules()) == [] and e.rules["recall"] is saved
    e.stopService()


def test_an_engine_on_its_own_store_does_not_read_the_rules_again():
    """No peers (one hub, SQLite): the stored rules are the engine's own, read once at start."""
    clock = clock_at()
    e = make_engine(clock, [CRISIS])
    result(e.store.save_rule("recall", RECALL, "web", clock.seconds()))
    clock.advance(RULES_EVERY * 3)
    assert set(e.rules) == {"crisis"}
    assert not e._rules_loop.running
    e.stopService()
