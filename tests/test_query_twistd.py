"""
Topic queries in a real C{twistd -n monitor}: the labelled complaint tweets
of C{../shared/data/complaints} replayed into a hub whose topics are
queries, and the posts it stores under each topic checked through the API
against the same queries computed here, independently, by plain Python
predicates over the words of each text.

The annotators' domain label is carried as the post's author, so that a
field filter (C{author:transport}) selects by a label people gave.
"""

import csv
import json
import re
import unicodedata
import urllib.parse

import pytest
import pytest_twisted

from tests.test_twistd import CONFIG as TWISTD_CONFIG, Hub

pytestmark = pytest.mark.timeout(300)

TOPICS = {
    "Refunds": {"query": "(refund* OR cancel*) -order"},
    "Delays": {"query": "author:transport (delay* OR late*) NEAR/4 (train* OR flight* OR bus*)"},
    "Service": {"query": '"customer service" NOT (thank* OR great)'},
    "Orders": {"terms": ["order"], "query": "never OR still OR late* OR likes:>=150"},
}


def words(text):
    """The text's words as the matcher sees them: accents dropped, case folded, runs of \\w."""
    text = unicodedata.normalize("NFKD", text)
    return re.findall(r"\w+", "".join(c for c in text if not unicodedata.combining(c)).casefold())


def starts(*prefixes):
    return lambda w: w.startswith(prefixes)


def near(ws, left, right, n):
    a = [i for i, w in enumerate(ws) if left(w)]
    b = [i for i, w in enumerate(ws) if right(w)]
    return any(abs(i - j) <= n for i in a for j in b)


#: The queries above, written again as plain predicates over (words, row).
PREDICATES = {
    "Refunds": lambda ws, r: any(map(starts("refund", "cancel"), ws)) and "order" not in ws,
    "Delays": lambda ws, r: (
        r["domain"] == "transport" and near(ws, starts("delay", "late"), starts("train", "flight", "bus"), 4)
    ),
    "Service": lambda ws, r: (
        any(ws[i : i + 2] == ["customer", "service"] for i in range(len(ws)))
        and not any(w.startswith("thank") or w == "great" for w in ws)
    ),
    "Orders": lambda ws, r: (
        "order" in ws and ("never" in ws or "still" in ws or any(map(starts("late"), ws)) or r["likes"] >= 150)
    ),
}


def config():
    """The end-to-end test's hub (store, API, the replay), with the query topics."""
    text = TWISTD_CONFIG.split("[[topics]]", 1)[0]
    for name, spec in TOPICS.items():
        text += f"[[topics]]\nname = {json.dumps(name)}\n"
        for key, value in spec.items():
            text += f"{key} = {json.dumps(value)}\n"
    return text


def labelled(shared_data):
    path = shared_data / "complaints" / "complaints-data.csv"
    with open(path, encoding="utf-8", newline="") as f:
        rows = [{"id": ident, "text": text, "complaint": label, "domain": domain, "likes": i % 200}
                for i, (ident, text, label, domain) in enumerate(csv.reader(f))]  # fmt: skip
    return rows


async def stored(hub, **params):
    """Every post the API gives for these parameters, page by page: native id -> post."""
    seen, cursor = {}, None
    while True:
        query = dict(params, limit=500, **({"cursor": cursor} if cursor else {}))
        code, body = await hub.get("/api/v1/posts?" + urllib.parse.urlencode(query))
        assert code == 200, body
        page = json.loads(body)
        seen.update((p["native_id"], p) for p in page["posts"])
        cursor = page["next"]
        if not cursor:
            return seen


@pytest_twisted.ensureDeferred
async def test_query_topics_store_exactly_what_their_queries_match(reactor, tmp_path, shared_data):
    """Each query topic holds exactly the labelled posts its query matches, no more and no fewer."""
    rows = labelled(shared_data)
    assert len(rows) == 3449
    lines = [json.dumps({"id": r["id"], "text": r["text"], "author": r["domain"], "likes": r["likes"],
                         "created_at": f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"})
             for i, r in enumerate(rows)]  # fmt: skip
    (tmp_path / "posts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = {name: set() for name in TOPICS}
    for r in rows:
        ws = words(r["text"])
        for name, holds in PREDICATES.items():
            if holds(ws, r):
                expected[name].add(r["id"])
    assert all(len(ids) >= 5 for ids in expected.values()), {k: len(v) for k, v in expected.items()}
    everything = set().union(*expected.values())

    hub = Hub(reactor, tmp_path, config())
    hub.start()
    try:

        async def finished():
            code, body = await hub.get("/healthz", token=None)
            if code != 200 or json.loads(body)["sources"].get("archive") != "finished":
                return False
            code, metrics = await hub.get("/metrics", token=None)
            done = re.search(r'monitor_posts_stored_total\{source="archive"\} (\d+)', metrics)
            unmatched = re.search(r'monitor_posts_unmatched_total\{source="archive"\} (\d+)', metrics)
            return done and unmatched and int(float(done[1])) + int(float(unmatched[1])) == len(rows)

        await hub.wait_until(finished, seconds=240)
        for name in TOPICS:
            got = await stored(hub, topic=name)
            assert set(got) == expected[name], name
            assert all(name in p["topics"] for p in got.values())
        assert set(await stored(hub)) == everything
        # The same language filters the API's search of what was stored.
        got = await stored(hub, query=TOPICS["Refunds"]["query"])
        assert set(got) == expected["Refunds"]
        texts = {r["id"]: r["text"] for r in rows}
        ordered = {i for i in everything if re.search(r"\bmy\W+(?:\w+\W+)?order\b", " ".join(words(texts[i])))}
        got = await stored(hub, query="my ONEAR/2 order")
        assert len(ordered) >= 3 and set(got) == ordered
        code, body = await hub.get("/api/v1/posts?" + urllib.parse.urlencode({"query": "refund AND (cancel"}))
        assert code == 400 and json.loads(body)["parameter"] == "query"
        assert "position 19" in json.loads(body)["error"]
    finally:
        assert await hub.stop(), hub.output()
