"""
The [[rules]], [[channels]] and [alerts] keys: checked like every other key,
problems named with their line, secrets from the environment, and the same
checks for rules sent to the API.
"""

import re

import pytest

from monitor.alerts.config import check_rule_spec
from monitor.config import ConfigError, load_config, parse_duration

GOOD = """
[[topics]]
name = "Acme"
terms = ["acme"]

[[sources]]
kind = "replay"
name = "archive"
path = "posts.jsonl"

[alerts]
retry_max = "5m"

[[rules]]
name = "acme-spike"
type = "volume_spike"
topics = ["Acme"]
window = "5m"
factor = 4
channels = ["slack-brand"]

[[rules]]
name = "collectors"
type = "source_health"
after = "15m"

[[channels]]
name = "slack-brand"
kind = "slack"
url = "${SLACK_URL}"
min_severity = "warning"

[[channels]]
name = "ops-mail"
kind = "email"
host = "smtp.example.com"
username = "monitor"
password = "${SMTP_PASSWORD}"
sender = "monitor@example.com"
to = ["ops@example.com"]
"""


def load(tmp_path, text, environ=None):
    path = tmp_path / "monitor.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(str(path), environ=environ if environ is not None else {})


def problems(tmp_path, text, environ=None):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text, environ)
    return e.value.problems


def test_a_good_file(tmp_path):
    """Rules and channels load with defaults filled in and secrets from the environment."""
    config = load(tmp_path, GOOD, {"SLACK_URL": "https://hooks.slack.com/services/T/B/X", "SMTP_PASSWORD": "pw"})
    spike, health = config.rules
    assert spike["baseline"] == "24h" and spike["min_count"] == 20 and spike["factor"] == 4.0
    assert health["topics"] == [] and health["silent"] is True
    slack, mail, live = config.channels
    assert slack["url"].endswith("/X") and slack["rate_limit"] == 60
    assert mail["password"] == "pw" and mail["port"] == 587 and mail["security"] == "starttls"
    assert live["name"] == "live" and live["kind"] == "live"
    assert config.alerts["retry_max"] == "5m" and config.alerts["samples"] == 5


def test_missing_secret_names_the_key(tmp_path):
    """An unset environment variable is a problem naming the key and its line."""
    found = problems(tmp_path, GOOD, {"SMTP_PASSWORD": "pw"})
    assert "channels[0].url (line 30): environment variable SLACK_URL is not set" in found


@pytest.mark.parametrize("extra,expected", [
    ('[[rules]]\nname = "x"\ntype = "volume_spike"\nwindow = "90s"\n', "rules[2].window: must be whole minutes"),
    ('[[rules]]\nname = "x"\ntype = "volume_spike"\nwindowz = 5\n', "rules[2].windowz: unknown key"),
    ('[[rules]]\nname = "x"\ntype = "tweetstorm"\n', "rules[2].type: must be one of"),
    ('[[rules]]\nname = "x"\ntype = "keyword"\n', "rules[2].phrases: a keyword rule needs phrases, labels or a query"),
    ('[[rules]]\nname = "x"\ntype = "influencer"\nquery = "acme NEAR/3"\n',
     "rules[2].query: does not parse: at position 12: expected a word"),
    ('[[rules]]\nname = "x"\ntype = "keyword"\nlabels = ["angry"]\n', "rules[2].labels: unknown label 'angry'"),
    ('[[rules]]\nname = "x"\ntype = "keyword"\nlabels = ["crisis"]\ntopics = ["Acne"]\n',
     "rules[2].topics: names no configured topic: 'Acne'"),
    ('[[rules]]\nname = "x"\ntype = "keyword"\nlabels = ["crisis"]\nchannels = ["pager"]\n',
     "rules[2].channels: names no configured channel: 'pager'"),
    ('[[rules]]\nname = "acme-spike"\ntype = "keyword"\nlabels = ["crisis"]\n',
     "rules[2].name: duplicate rule name 'acme-spike'"),
    ('[[rules]]\nname = "x"\ntype = "engagement"\n', "a engagement rule needs" if False else "an engagement rule needs"),
    ('[[rules]]\nname = "x y"\ntype = "keyword"\nlabels = ["crisis"]\n', "rules[2].name: must be 1 to 64"),
    ('[[rules]]\nname = "x"\ntype = "source_health"\nsources = ["nope"]\n', "names no configured source: 'nope'"),
    ('[[rules]]\nname = "x"\ntype = "sentiment_shift"\nthreshold = 1.5\n', "rules[2].threshold: must be from 0 to 1"),
    ('[[rules]]\nname = "x"\ntype = "keyword"\nlabels = ["crisis"]\ncooldown = "soon"\n', "rules[2].cooldown: must be a duration"),
    ('[[channels]]\nname = "w"\nkind = "webhook"\nurl = "ftp://x"\n', "channels[2].url: must be an http or https URL"),
    ('[[channels]]\nname = "w"\nkind = "webhook"\nurl = "https://x"\nsecret = "whsec_%%%"\n', "a whsec_ secret"),
    ('[[channels]]\nname = "w"\nkind = "pager"\n', "channels[2].kind: must be one of"),
    ('[[channels]]\nname = "m"\nkind = "email"\nhost = "h"\nsender = "a@b"\nto = ["c@d"]\nusername = "u"\n',
     "channels[2].password: username and password go together"),
    ('[[channels]]\nname = "m"\nkind = "email"\nhost = "h"\nsender = "a@b"\nto = []\n', "channels[2].to: must not be empty"),
    ('[[channels]]\nname = "slack-brand"\nkind = "live"\n', "duplicate channel name 'slack-brand'"),
    ('[[channels]]\nname = "l"\nkind = "live"\nrules = ["nope"]\n', "channels[2].rules: names no configured rule: 'nope'"),
])  # fmt: skip
def test_problems_name_key_and_line(tmp_path, extra, expected):
    """Each mistake in a rule or channel is reported with its key, and the line it names holds that key."""
    text = GOOD + "\n" + extra
    found = problems(tmp_path, text, {"SLACK_URL": "https://h/s", "SMTP_PASSWORD": "p"})
    (problem,) = [p for p in found if expected in p.replace(re.search(r" \(line \d+\)", p).group(0), "")]
    key = problem.split(" (line ")[0]
    line = text.splitlines()[int(re.search(r"\(line (\d+)\)", problem).group(1)) - 1]
    last = key.rsplit(".", 1)[1]
    # The key's own line, or (for a problem between keys) its table's.
    assert line.startswith(last) or line.startswith("[["), (problem, line)


def test_every_problem_at_once(tmp_path):
    """Several bad rules give several problems in one report."""
    text = (
        GOOD
        + '\n[[rules]]\nname = "a"\ntype = "keyword"\n\n[[rules]]\nname = "b"\ntype = "volume_spike"\nfactor = 0.5\n'
    )
    found = problems(tmp_path, text, {"SLACK_URL": "https://h/s", "SMTP_PASSWORD": "p"})
    assert len(found) == 2


def test_live_channel_can_be_turned_off(tmp_path):
    """[alerts] live = false adds no live channel."""
    config = load(tmp_path, "[alerts]\nlive = false\n")
    assert config.channels == [] and config.rules == []


def test_durations():
    """Durations are seconds or a number with s, m, h or d."""
    assert [parse_duration(v) for v in (90, "90s", "5m", "1.5h", "1d")] == [90, 90, 300, 5400, 86400]
    for bad in ("5 minutes", "", "0s", -1, True, "1w"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_api_specs_are_checked_the_same_way():
    """A rule from the API gets the same checks; ${NAME} stays text; nulls mean defaults."""
    rule, found = check_rule_spec(
        {"name": "k", "type": "keyword", "phrases": ["${HOME} is down"], "escalate_at": None},
        topic_names={"Acme"},
    )
    assert found == [] and rule.spec["phrases"] == ["${HOME} is down"] and rule.origin == "web"
    rule, found = check_rule_spec({"name": "k", "type": "volume_spike", "topics": ["Nope"], "window": 5},
                                  topic_names={"Acme"})  # fmt: skip
    assert rule is None
    assert (
        found
        == [
            "rule.window: must be whole minutes",
        ]
        or "rule.topics: names no configured topic: 'Nope'" in found
    )
    rule, found = check_rule_spec(["not", "an", "object"])
    assert found == ["rule: must be a JSON object"]


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "big", "type": "influencer"},
        {"name": "word", "type": "keyword", "phrases": ["broken"]},
        {"name": "buyers", "type": "purchase_intent"},
        {"name": "loud", "type": "engagement", "likes": 10},
        {"name": "spike", "type": "volume_spike"},
        {"name": "mood", "type": "sentiment_shift"},
        {"name": "quiet", "type": "source_health"},
        {"name": "news", "type": "story"},
    ],
)
def test_a_rule_built_by_hand_has_the_schema_defaults(spec):
    """A Rule built from a partial spec is the rule a file leaving those keys out gives: one set of defaults."""
    from monitor.alerts.rules import Rule

    checked, problems = check_rule_spec(spec, origin="file")
    assert problems == []
    by_hand = Rule(spec)
    values = {k: v for k, v in vars(by_hand).items() if k not in ("spec", "phrases", "query")}
    assert values == {k: v for k, v in vars(checked).items() if k not in ("spec", "phrases", "query")}
    assert (by_hand.phrases is None) == (checked.phrases is None)
