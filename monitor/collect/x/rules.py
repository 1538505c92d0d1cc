"""
The filtered stream's rules, kept equal to the configured queries (tagged
by topic): on every (re)connect, and at once when a topic is edited.
"""

from __future__ import annotations

import json

from monitor.collect.x.api import RULES, XClient, problem


class RuleSync:
    """
    The stream's rules, for L{monitor.collect.x.stream.XStream}: made the
    collector's C{queries} through the API client.
    """

    def __init__(self, collector, client: XClient) -> None:
        self.collector = collector
        self.client = client

    async def sync(self) -> None:
        """
        Make the stream's rules the configured queries: delete the others,
        add the missing ones.
        """
        c, client = self.collector, self.client
        body = await client.json(await client.request("GET", RULES, "rules"), "rules")
        client.partial(body, "rules")
        have: dict[tuple, str] = {}
        for rule in body.get("data") or []:
            if isinstance(rule, dict) and isinstance(rule.get("id"), str):
                have[(rule.get("value"), rule.get("tag"))] = rule["id"]
        wanted = {(q, tag) for tag, q in c.queries}
        delete = [rid for key, rid in have.items() if key not in wanted]
        add = [{"value": q, "tag": tag} for tag, q in c.queries if (q, tag) not in have]
        if delete:
            answer = await client.json(
                await client.request("POST", RULES, "rules-post", json_body={"delete": {"ids": delete}}), "rules"
            )
            client.partial(answer, "deleting rules")
        refused = 0
        if add:
            answer = await client.json(
                await client.request("POST", RULES, "rules-post", json_body={"add": add}), "rules"
            )
            errors = answer.get("errors")
            if isinstance(errors, list) and errors:
                refused = len(errors)
                client.partial_errors += refused
                for e in errors[:10]:
                    c.log.warn(
                        "source {source}: X refused a rule: {error}",
                        source=c.name,
                        error=problem(json.dumps(e).encode())[1] if isinstance(e, dict) else e,
                    )
                c.note_error(f"X refused {refused} of {len(add)} rules")
        c.log.info(
            "source {source}: stream rules in sync ({added} added, {deleted} deleted, {kept} kept)",
            source=c.name,
            added=len(add) - refused,
            deleted=len(delete),
            kept=len(c.queries) - len(add),
        )


__all__ = ["RuleSync"]
