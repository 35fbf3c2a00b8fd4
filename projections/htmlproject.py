"""`history project:NAME --html FILE` (issue 18): a Compose project's life as one
self-contained page — one row per container the project ever had (removed ones too), grouped
and labelled by service, each with its runs as bars and its health as a thin band, and the
project's Compose commands (`up`, `down`, a scale, a recreate: projections/compose.py) as
marks with who ran them; a click shows what `ps --at` said for every container then.

I/O: none. Takes the `/shipslog/compose/NAME/history` and `/shipslog/compose/NAME/containers`
answers, each container's `/shipslog/history` timeline, user names for uids and `now_ns`;
returns the page, built from the same page, bars and script as projections/htmltimeline.py.
Every text from the log is escaped.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from projections.history import command_line
from projections.htmltimeline import (
    _CSP,
    _PAGE,
    LEFT,
    RIGHT,
    WIDTH,
    _bounds,
    _health_band,
    _object_data,
    _run_bars,
    _Scale,
    _t,
)

__all__ = ["render_project"]

LANE, FIRST_ROW, ROW = 44, 96, 34
_KIND_COLOURS = {"up": "#2e7d32", "down": "#616161", "scale": "#1565c0",
                 "recreate": "#ef6c00"}


def _who(actor: Mapping[str, Any], names: Mapping[int, str]) -> str:
    """A Compose command's actor: projections/compose.py keeps uid, pid and command line."""
    command = tuple(actor.get("command") or ())
    if command == ("(daemon)",):
        return "the daemon"
    uid = int(actor.get("uid", -1))
    cmd = command_line(command)
    who = f"{names.get(uid, 'uid ' + str(uid))} (uid {uid}, pid {actor.get('pid')})"
    return who + (f" running `{cmd}`" if cmd else "")


def _entry_marks(rows: Sequence[Mapping[str, Any]], sc: _Scale, names: Mapping[int, str],
                 bottom: int) -> list[str]:
    out = []
    for i, row in enumerate(rows):
        x = sc.x(row["started_at"])
        kind = row["kind"]
        lines = [f"{s['service']} {s['action']} "
                 + " → ".join(c[:12] for c in s["containers"])
                 + (f" ({s['reason']})" if s.get("reason") else "")
                 for s in row.get("services") or []]
        tip = (f"{kind} at {_t(row['started_at'])} by {_who(row['actor'], names)}\n"
               f"events {row['first_seq']}-{row['last_seq']}\n" + "\n".join(lines))
        y = LANE - 14 + 28 * (i % 2)  # neighbours' labels above and below the lane
        # near the right edge: the label to the left of its mark
        tx, anchor = (x - 8, "end") if x > WIDTH - 120 else (x + 8, "start")
        out.append(
            f'<g class="entry {html.escape(kind)}" data-kind="{html.escape(kind)}" '
            f'data-first-seq="{row["first_seq"]}" data-at="{row["started_at"]}">'
            f'<line x1="{x}" x2="{x}" y1="{LANE}" y2="{bottom}" stroke="#8d6e63" '
            f'stroke-dasharray="3,3"/><circle cx="{x}" cy="{LANE}" r="6" '
            f'fill="{_KIND_COLOURS.get(kind, "#8d6e63")}"/><text x="{tx}" y="{y}" '
            f'font-size="11" text-anchor="{anchor}">{html.escape(kind)}</text>'
            f'<title>{html.escape(tip)}</title></g>')
    return out


def _container_row(member: Mapping[str, Any], tl: Mapping[str, Any], sc: _Scale, y: int,
                   bounds: tuple[int, int], new_service: bool) -> list[str]:
    first, last = bounds
    removed = bool(tl.get("removed"))
    name = tl.get("name") or tl["id"][:12]
    label = member["service"] + (f" #{member['number']}" if member.get("number") else "")
    tip = f"service {member['service']}: container {name} ({tl['id'][:12]})" + \
        (", removed" if removed else "")
    colour = "#9e9e9e" if removed else "#212121"
    out = [f'<g class="member" data-id="{tl["id"]}" data-service="'
           f'{html.escape(member["service"])}"><text x="8" y="{y + 4}" font-size="12" '
           f'fill="{colour}">{html.escape(label[:16])}</text>'
           f'<title>{html.escape(tip)}</title></g>',
           f'<line class="life" x1="{sc.x(first)}" x2="{sc.x(last)}" y1="{y}" y2="{y}" '
           f'stroke="#bdbdbd" stroke-width="2"><title>{html.escape(name)}: created '
           f'{_t(first)}{", removed " + _t(last) if removed else ""}</title></line>']
    if new_service:  # a rule between services' groups of rows
        out.append(f'<line class="group" x1="4" x2="{WIDTH - RIGHT}" y1="{y - ROW // 2}" '
                   f'y2="{y - ROW // 2}" stroke="#e0e0e0"/>')
    entries = tl.get("entries") or []
    return (out + _run_bars(tl.get("runs") or [], sc, last, y=y - 9, height=18)
            + _health_band(entries, sc, last, y=y + 10, height=4))


def _axis(sc: _Scale, y: int) -> list[str]:
    out = [f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" stroke="#999"/>',
           f'<text x="8" y="{LANE + 4}" font-size="12">compose</text>']
    for i in range(6):
        ns = sc.t0 + (sc.t1 - sc.t0) * i // 5
        x = sc.x(ns)
        anchor = ("start", "middle", "middle", "middle", "middle", "end")[i]
        out.append(f'<line x1="{x}" x2="{x}" y1="{y - 3}" y2="{y + 3}" stroke="#999"/><text '
                   f'x="{x}" y="{y + 17}" font-size="10" text-anchor="{anchor}">'
                   f'{_t(ns)[11:]}</text>')
    return out


def _objects(timelines: Sequence[Mapping[str, Any]],
             bounds: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    """The script's objects; a recreated container's name is its predecessor's, so where a
    name is shared the click panel adds the short id."""
    objects = [_object_data(tl, *b) for tl, b in zip(timelines, bounds, strict=True)]
    counts: dict[str, int] = {}
    for o in objects:
        counts[o["name"]] = counts.get(o["name"], 0) + 1
    for o in objects:
        if counts[o["name"]] > 1:
            o["name"] = f"{o['name']} ({o['id'][:12]})"
    return objects


def render_project(project: str, rows: Sequence[Mapping[str, Any]],
                   members: Sequence[Mapping[str, Any]],
                   timelines: Sequence[Mapping[str, Any]], names: Mapping[int, str],
                   now_ns: int, window: tuple[int | None, int | None] = (None, None)) -> str:
    """A project's page: `members[i]` (service, number) is the container whose timeline is
    `timelines[i]`; `rows` are the project's Compose commands, oldest first."""
    bounds = [_bounds(tl, now_ns) for tl in timelines]
    times = [b for pair in bounds for b in pair] + [r["started_at"] for r in rows] or [now_ns]
    t0, end = min(times), max(times)
    sc = _Scale(window[0] if window[0] is not None else t0,
                window[1] if window[1] is not None else end + max((end - t0) // 50, 1))
    axis_y = FIRST_ROW + ROW * len(members)
    svg = _axis(sc, axis_y) + _entry_marks(rows, sc, names, axis_y)
    for i, (m, tl, b) in enumerate(zip(members, timelines, bounds, strict=True)):
        new_service = i > 0 and m["service"] != members[i - 1]["service"]
        svg += _container_row(m, tl, sc, FIRST_ROW + ROW * i, b, new_service)
    height = axis_y + 30
    block = (f'<svg class="timeline" data-index="0" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg">\n'
             + "\n".join(svg) + f'\n<line class="cursor" x1="-10" x2="-10" y1="20" '
             f'y2="{axis_y}" stroke="#000" stroke-width="1"/>\n</svg>')
    services = sorted({m["service"] for m in members})
    removed = sum(1 for tl in timelines if tl.get("removed"))
    summary = (f"{len(members)} containers ({removed} removed) of {len(services)} services "
               f"({', '.join(services)}), {len(rows)} Compose commands, "
               f"{sum(len(tl.get('runs') or []) for tl in timelines)} runs")
    data = {"t0": sc.t0, "t1": sc.t1, "left": LEFT, "width": WIDTH - LEFT - RIGHT,
            "objects": _objects(timelines, bounds)}
    # `</` never appears inside the JSON: a name holding `</script>` cannot end the block.
    blob = json.dumps(data).replace("</", "<\\/")
    return _PAGE.format(csp=_CSP, title=html.escape(f"Compose project {project}"),
                        summary=html.escape(summary), blocks=block, data=blob,
                        span=html.escape(f"{_t(sc.t0)} — {_t(sc.t1)}"))
