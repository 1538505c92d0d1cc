"""
The sources, the queue and the analysis nodes, as they are now.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from klein import Klein

from monitor.web.pages.base import Area, Shell, page
from monitor.web.params import Params
from monitor.status import StatusService


class SourcePages(Area):
    """
    C{/sources} and C{/ui/sources.json}.
    """

    app = Klein()

    def __init__(self, shell: Shell, status: StatusService) -> None:
        super().__init__(shell)
        #: The collectors', queue's and nodes' state, as the live channel
        #: sends it (L{monitor.status}).
        self.status = status

    @app.route("/sources", methods=["GET"])
    @page()
    async def sources(self, request, session):
        status = self.status.snapshot()
        nodes = status["nodes"]
        return self._render(
            request,
            session,
            "sources.html",
            active="sources",
            sources=status["sources"],
            nodes=_table(nodes),
            has_nodes=nodes is not None,
            queue=status["queue"],
        )

    @app.route("/ui/sources.json", methods=["GET"])
    @page(json_api=True)
    async def sources_json(self, request, session):
        Params(request).finish()
        return self._json(request, 200, self.status.snapshot())


def _table(value) -> Optional[dict[str, Any]]:
    """
    Whatever C{nodes.status()} returned, as headings and rows for a table
    (and other facts as key/value pairs), without assuming its shape.
    """
    if value is None:
        return None
    rows: list = []
    facts: dict = {}
    if isinstance(value, list):
        rows = value
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, list) and all(isinstance(i, dict) for i in v) and not rows:
                rows = v
            elif isinstance(v, dict) and all(isinstance(i, dict) for i in v.values()) and not rows:
                rows = [{"name": name, **item} for name, item in v.items()]
            else:
                facts[k] = v
    else:
        facts["status"] = value
    rows = [r if isinstance(r, dict) else {"value": r} for r in rows]
    headings: list[str] = []
    for r in rows:
        for k in r:
            if k not in headings:
                headings.append(k)
    return {
        "headings": headings,
        "rows": [[_plain(r.get(h)) for h in headings] for r in rows],
        "facts": {k: _plain(v) for k, v in facts.items()},
    }


def _plain(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)
