"""
The filtered stream's rules, kept equal to the configured queries (tagged
by topic): on every (re)connect, and at once when a topic is edited.
"""

from __future__ import annotations

import json

from twisted.internet.defer import ensureDeferred

from monitor.collect.x.api import RULES, problem


class RuleSync:
    """
    Rule syncing, for L{monitor.collect.x.XSource} in stream mode.  Mixed
    into the source, it reads the source's C{queries} and asks through
    L{XClient}.
    """

    def _topics_changed(self) -> None:
        """
        Searches read the topics at every poll; the stream's rules are
        re-synced now, without reconnecting.
        """
        if self.mode == "stream" and self.running:
            d = ensureDeferred(self._sync_rules())
            d.addErrback(
                lambda f: self.log.failure("source {source}: could not sync the stream's rules", f, source=self.name)
            )

    async def _sync_rules(self) -> None:
        """
        Make the stream's rules the configured queries: delete the others,
        add the missing ones.
        """
        body = await self._json(await self._request("GET", RULES, "rules"), "rules")
        self._partial(body, "rules")
        have: dict[tuple, str] = {}
        for rule in body.get("data") or []:
            if isinstance(rule, dict) and isinstance(rule.get("id"), str):
                have[(rule.get("value"), rule.get("tag"))] = rule["id"]
        wanted = {(q, tag) for tag, q in self.queries}
        delete = [rid for key, rid in have.items() if key not in wanted]
        add = [{"value": q, "tag": tag} for tag, q in self.queries if (q, tag) not in have]
        if delete:
            answer = await self._json(
                await self._request("POST", RULES, "rules-post", json_body={"delete": {"ids": delete}}), "rules"
            )
            self._partial(answer, "deleting rules")
        refused = 0
        if add:
            answer = await self._json(await self._request("POST", RULES, "rules-post", json_body={"add": add}), "rules")
            errors = answer.get("errors")
            if isinstance(errors, list) and errors:
                refused = len(errors)
                self.partial_errors += refused
                for e in errors[:10]:
                    self.log.warn(
                        "source {source}: X refused a rule: {error}",
                        source=self.name,
                        error=problem(json.dumps(e).encode())[1] if isinstance(e, dict) else e,
                    )
                self._note_error(f"X refused {refused} of {len(add)} rules")
        self.log.info(
            "source {source}: stream rules in sync ({added} added, {deleted} deleted, {kept} kept)",
            source=self.name,
            added=len(add) - refused,
            deleted=len(delete),
            kept=len(self.queries) - len(add),
        )


__all__ = ["RuleSync"]
