"""
The web side of learning: an editor's one-click corrections of posts (the
live feed, posts search and incident pages call C{POST /ui/feedback}) and
the Models page with each model's figures and learning curve.
"""

from __future__ import annotations

from typing import Any

from monitor.web.params import BadParameter, json_body

__all__ = ["correct", "curve_points", "models_view"]

#: The learning curve's drawing area, in SVG units.
CURVE_WIDTH, CURVE_HEIGHT, CURVE_PAD = 320, 120, 24


async def correct(feedback, request, user: str) -> dict[str, Any]:
    """
    One correction from the UI: C{{"post_id": ..., "sentiment": ...,
    "labels": {...}}}, or C{{"post_id": ..., "undo": true}} to forget the
    post's correction.  Stored under the user's name.
    """
    body = json_body(request)
    if not isinstance(body, dict):
        raise BadParameter("body", "must be a JSON object")
    post_id = body.pop("post_id", None)
    if not isinstance(post_id, str) or not post_id:
        raise BadParameter("post_id", "the post's id is required")
    if body.pop("undo", False) is True:
        if body:
            raise BadParameter(sorted(body)[0], "undo takes no other field")
        return {"undone": await feedback.delete(post_id), "post_id": post_id}
    found = await feedback.put(post_id, body, user)
    if found is None:
        raise BadParameter("post_id", "no such post is stored")
    return {"feedback": found}


def curve_points(curve: list[dict], key: str, most: int) -> str:
    """
    The SVG polyline points of one line of a learning curve: x the number
    of examples (0 .. C{most}), y macro-F1 (0 .. 1).
    """
    points = []
    for c in curve:
        value = c.get(key)
        if value is None:
            continue
        x = CURVE_PAD + (CURVE_WIDTH - 2 * CURVE_PAD) * (c["examples"] / most if most else 0)
        y = CURVE_HEIGHT - CURVE_PAD - (CURVE_HEIGHT - 2 * CURVE_PAD) * value
        points.append(f"{x:.1f},{y:.1f}")
    return " ".join(points)


def models_view(models: list[dict]) -> list[dict]:
    """
    The models as the page draws them: the API's fields plus the curve's
    polylines.
    """
    out = []
    for m in models:
        most = max([c["examples"] for c in m["curve"]] + [m["examples"], 1])
        out.append(dict(m, model_line=curve_points(m["curve"], "macro_f1", most),
                        baseline_line=curve_points(m["curve"], "baseline_macro_f1", most),
                        most=most, width=CURVE_WIDTH, height=CURVE_HEIGHT, pad=CURVE_PAD))  # fmt: skip
    return out
