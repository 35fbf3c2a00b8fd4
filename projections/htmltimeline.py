"""`history NAME --html FILE` (issue 18): one object's life as one self-contained HTML page —
a timeline with each run as a bar from start to exit (exit code, OOM, restart reason on
hover), health verdicts as a band, operations and their actors as marks, configuration
changes as annotations, and, on a click, what `ps --at` showed for it at that moment.

I/O: none. Takes the `/shipslog/history` answer (a `Timeline` as JSON), the `--changes`
answer, user names for uids (looked up by the caller at render time) and `now_ns` (the end of
a run still going); returns the page. Everything is inline: no script, style, font or image
is fetched from anywhere. Every text from the log is escaped (names and commands are the
user's: a container named `<script>` must stay text).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from projections.history import command_line

__all__ = ["render", "render_many"]

WIDTH, LEFT, RIGHT = 1100, 110, 20
ROWS = {"runs": 40, "health": 90, "ops": 130, "config": 170}
_RUN_COLOURS = {"ok": "#2e7d32", "failed": "#c62828", "oom": "#6a1b9a", "lost": "#616161",
                "running": "#1565c0", "start failed": "#ef6c00"}
_HEALTH_COLOURS = {"healthy": "#66bb6a", "unhealthy": "#e53935", "starting": "#fdd835"}
_OP_COLOURS = {"completed": "#1565c0", "failed": "#c62828", "compensated": "#ef6c00",
               "pending": "#9e9e9e"}


def _t(ns: int) -> str:
    secs, nanos = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs).strftime("%Y-%m-%d %H:%M:%S") + \
        f".{nanos // 1_000_000:03d}"


def _span(ns: int | None) -> str:
    if ns is None:
        return "-"
    return f"{ns / 1e6:.0f} ms" if ns < 1_000_000_000 else f"{ns / 1e9:.1f} s"


def _who(actor: Mapping[str, Any], names: Mapping[int, str]) -> str:
    if actor.get("via") == "daemon":
        return "the daemon"
    uid = int(actor.get("uid", -1))
    cmd = command_line(tuple(actor.get("command") or ()))
    who = f"{names.get(uid, 'uid ' + str(uid))} (uid {uid})"
    return who + (f" running `{cmd}`" if cmd else "")


def _run_kind(run: Mapping[str, Any]) -> str:
    ended = run.get("ended_by", "")
    if ended == "still running":
        return "running"
    if ended == "start failed":
        return "start failed"
    if ended.startswith("lost"):
        return "lost"
    if run.get("oom_killed"):
        return "oom"
    return "ok" if run.get("exit_code") == 0 else "failed"


class _Scale:
    def __init__(self, t0: int, t1: int) -> None:
        self.t0, self.t1 = t0, max(t1, t0 + 1)

    def x(self, ns: int) -> float:
        ns = min(max(ns, self.t0), self.t1)  # a time range drawn: what lies outside is cut
        return round(LEFT + (ns - self.t0) / (self.t1 - self.t0) * (WIDTH - LEFT - RIGHT), 2)


def _run_bars(runs: Sequence[Mapping[str, Any]], sc: _Scale, now_ns: int,
              y: int = ROWS["runs"] - 12, height: int = 24) -> list[str]:
    out = []
    for r in runs:
        kind = _run_kind(r)
        end = r.get("ended_at") or now_ns
        x0, x1 = sc.x(r["started_at"]), sc.x(end)
        code = "" if r.get("exit_code") is None else f"exit code {r['exit_code']}"
        if r.get("oom_killed"):
            code += " (OOM killed)"
        if r.get("signal"):
            code += f" ({r['signal']})"
        tip = (f"run {r['number']}: started {_t(r['started_at'])} — {r.get('cause', '')}\n"
               f"{r.get('ended_by', '')}{': ' + code if code else ''}"
               f"{' at ' + _t(r['ended_at']) if r.get('ended_at') else ''}; "
               f"ran {_span(r.get('duration_ns'))}" + (f"\n{r['error']}" if r.get("error") else ""))
        out.append(
            f'<rect class="run {kind}" data-run="{r["number"]}" data-start="{r["started_at"]}" '
            f'data-end="{r.get("ended_at") or 0}" data-exit="{"" if r.get("exit_code") is None else r["exit_code"]}" '  # noqa: E501
            f'x="{x0}" y="{y}" width="{max(x1 - x0, 2):.2f}" height="{height}" '
            f'fill="{_RUN_COLOURS[kind]}"><title>{html.escape(tip)}</title></rect>')
    return out


def _health_band(entries: Sequence[Mapping[str, Any]], sc: _Scale, end_ns: int,
                 y: int = ROWS["health"] - 8, height: int = 16) -> list[str]:
    changes = [(e["time_ns"], e["summary"].split(":", 1)[1].split("(")[0].strip(), e["summary"])
               for e in entries if e["type"] == "ContainerHealthChanged"]
    out = []
    for i, (at, status, summary) in enumerate(changes):
        until = changes[i + 1][0] if i + 1 < len(changes) else end_ns
        x0, x1 = sc.x(at), sc.x(until)
        out.append(f'<rect class="health {html.escape(status)}" x="{x0}" y="{y}" '
                   f'width="{max(x1 - x0, 2):.2f}" height="{height}" '
                   f'fill="{_HEALTH_COLOURS.get(status, "#bdbdbd")}"><title>'
                   f'{html.escape(_t(at) + " " + summary)}</title></rect>')
    return out


def _op_marks(ops: Sequence[Mapping[str, Any]], sc: _Scale,
              names: Mapping[int, str]) -> list[str]:
    out = []
    for o in ops:
        x = sc.x(o["requested_at"])
        tip = (f"{o['kind']} at {_t(o['requested_at'])} by {_who(o['actor'], names)}\n"
               f"{o['outcome']}{': ' + o['error'] if o.get('error') else ''}"
               f" in {_span(o.get('duration_ns'))}")
        out.append(f'<circle class="op {o["outcome"]}" data-op="{html.escape(o["op_id"])}" '
                   f'cx="{x}" cy="{ROWS["ops"]}" r="6" fill="{_OP_COLOURS.get(o["outcome"])}">'
                   f'<title>{html.escape(tip)}</title></circle>')
    return out


# The first bar and the health band say these; a container joins and leaves its networks at
# every start and exit, which the bars already show.
_NOT_ANNOTATED = ("created", "health", "network connected", "network disconnected")


def _annotations(changes: Sequence[Mapping[str, Any]], sc: _Scale) -> list[str]:
    out = []
    shown = [ch for ch in changes if ch["what"] not in _NOT_ANNOTATED]
    for i, ch in enumerate(shown):
        x = sc.x(ch["time_ns"])
        y = ROWS["config"] - 12 * (i % 2)  # neighbours' labels on two lines
        anchor = "end" if x > WIDTH - 260 else "start"  # near the right edge: to the left
        lines = [f"{f}: {_plain(old)} → {_plain(new)}" for f, old, new in ch["fields"]]
        tip = f"{_t(ch['time_ns'])} {ch['what']}\n" + "\n".join(lines)
        label = ch["what"] if len(lines) != 1 else lines[0]
        out.append(f'<g class="config"><line x1="{x}" x2="{x}" y1="20" y2="{y}" '
                   f'stroke="#8d6e63" stroke-dasharray="3,3"/><text x="{x + 3}" '
                   f'y="{y}" font-size="11" text-anchor="{anchor}">{html.escape(label[:40])}'
                   f'</text>'
                   f'<title>{html.escape(tip)}</title></g>')
    return out


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value)


_ANCHORS = ("start", "middle", "middle", "middle", "middle", "end")


def _axis(sc: _Scale) -> list[str]:
    out = [f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="195" y2="195" stroke="#999"/>']
    for i in range(6):
        ns = sc.t0 + (sc.t1 - sc.t0) * i // 5
        x = sc.x(ns)
        out.append(f'<line x1="{x}" x2="{x}" y1="192" y2="198" stroke="#999"/><text x="{x}" '
                   f'y="212" font-size="10" text-anchor="{_ANCHORS[i]}">{_t(ns)[11:]}</text>')
    for label, y in (("runs", ROWS["runs"]), ("health", ROWS["health"]),
                     ("operations", ROWS["ops"]), ("config", ROWS["config"])):
        out.append(f'<text x="8" y="{y + 4}" font-size="12">{label}</text>')
    return out


def render(tl: Mapping[str, Any], changes: Sequence[Mapping[str, Any]],
           names: Mapping[int, str], now_ns: int) -> str:
    """One object's page."""
    return render_many([(tl, changes)], names, now_ns)


def _bounds(tl: Mapping[str, Any], now_ns: int) -> tuple[int, int]:
    times = [e["time_ns"] for e in tl.get("entries") or []] or [now_ns]
    running = any(r.get("ended_by") == "still running" for r in tl.get("runs") or [])
    return times[0], (max(times[-1], now_ns) if running else times[-1])


def render_many(items: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]],
                names: Mapping[int, str], now_ns: int,
                window: tuple[int | None, int | None] = (None, None)) -> str:
    """Several objects (a service's containers, a network and its users) on one time scale:
    a click shows what `ps --at` said for each of them at that moment. `window`: the time
    range to draw (Unix ns; None: from the first event, to the last)."""
    bounds = [_bounds(tl, now_ns) for tl, _ in items]
    t0, end = min(b[0] for b in bounds), max(b[1] for b in bounds)
    t1 = end + max((end - t0) // 50, 1)
    sc = _Scale(window[0] if window[0] is not None else t0,
                window[1] if window[1] is not None else t1)
    blocks, objects, summaries = [], [], []
    for i, ((tl, changes), (first, last)) in enumerate(zip(items, bounds, strict=True)):
        entries, runs = tl.get("entries") or [], tl.get("runs") or []
        svg = (_axis(sc) + _run_bars(runs, sc, last) + _health_band(entries, sc, last)
               + _op_marks(tl.get("ops") or [], sc, names) + _annotations(changes, sc))
        label = f"{tl['kind']} {tl.get('name') or tl['id'][:12]}"
        summary = (f"{len(entries)} events, {len(tl.get('ops') or [])} operations, "
                   f"{len(runs)} runs, {tl.get('restarts', 0)} restarts, "
                   f"{tl.get('oom_kills', 0)} OOM kills"
                   + (" (removed)" if tl.get("removed") else ""))
        summaries.append(summary)
        heading = f"<h2>{html.escape(label)}</h2><div class=\"sub\">{html.escape(summary)}" \
            "</div>" if len(items) > 1 else ""
        blocks.append(_SVG.format(i=i, heading=heading, svg="\n".join(svg)))
        objects.append(_object_data(tl, first, last))
    data = {"t0": sc.t0, "t1": sc.t1, "left": LEFT, "width": WIDTH - LEFT - RIGHT,
            "objects": objects}
    title = ", ".join(f"{tl['kind']} {tl.get('name') or tl['id'][:12]}" for tl, _ in items)
    # `</` never appears inside the JSON: a name holding `</script>` cannot end the block.
    blob = json.dumps(data).replace("</", "<\\/")
    return _PAGE.format(csp=_CSP, title=html.escape(title),
                        summary=html.escape(summaries[0] if len(items) == 1 else
                                            f"{len(items)} objects"),
                        blocks="\n".join(blocks), data=blob,
                        span=html.escape(f"{_t(sc.t0)} — {_t(sc.t1)}"))


def _object_data(tl: Mapping[str, Any], first: int, last: int) -> dict[str, Any]:
    """What the page's script needs to say what `ps --at` showed for the object."""
    return {
        "kind": tl["kind"], "id": tl["id"], "name": tl.get("name", ""),
        "runs": [{k: r.get(k) for k in ("number", "started_at", "ended_at", "exit_code",
                                        "oom_killed", "ended_by", "pid", "cause")}
                 for r in tl.get("runs") or []],
        "created": first, "removed": bool(tl.get("removed")),
        "removed_at": last if tl.get("removed") else None}


_SVG = """{heading}<svg class="timeline" data-index="{i}" width="1100" height="220"
 viewBox="0 0 1100 220" xmlns="http://www.w3.org/2000/svg">
{svg}
<line class="cursor" x1="-10" x2="-10" y1="20" y2="195" stroke="#000" stroke-width="1"/>
</svg>"""


# The page may fetch nothing at all: a browser enforces it, not only our care.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>shipslog history: {title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 24px; color: #212121; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }}
h2 {{ font-size: 16px; margin: 14px 0 2px; }}
.sub {{ color: #616161; margin-bottom: 12px; }}
svg {{ border: 1px solid #e0e0e0; background: #fafafa; cursor: crosshair; }}
#at {{ margin-top: 12px; padding: 8px 12px; border-left: 4px solid #1565c0; background: #e3f2fd;
       min-height: 2.6em; white-space: pre-wrap; }}
.legend span {{ display: inline-block; margin-right: 14px; }}
.legend i {{ display: inline-block; width: 12px; height: 12px; margin-right: 4px;
             vertical-align: -1px; }}
code {{ background: #eeeeee; padding: 1px 4px; }}
</style></head>
<body>
<h1>shipslog history: {title}</h1>
<div class="sub">{summary} · {span}</div>
<div class="legend"><span><i style="background:#2e7d32"></i>exit 0</span><span><i
style="background:#c62828"></i>exit ≠ 0 / failed</span><span><i style="background:#6a1b9a"></i>OOM
killed</span><span><i style="background:#616161"></i>lost</span><span><i
style="background:#1565c0"></i>running / completed</span><span><i
style="background:#ef6c00"></i>start failed / compensated</span></div>
{blocks}
<div id="at">Hover a bar, a band or a mark for details; click anywhere on the timeline for
what <code>ps --at</code> showed at that moment.</div>
<script type="application/json" id="data">{data}</script>
<script>
"use strict";
(function () {{
  const data = JSON.parse(document.getElementById("data").textContent);
  const svgs = Array.from(document.querySelectorAll("svg.timeline"));
  const panel = document.getElementById("at");
  function stamp(ns) {{
    const d = new Date(Math.floor(ns / 1e6));
    const pad = (n, w) => String(n).padStart(w || 2, "0");
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." +
      pad(d.getMilliseconds(), 3);
  }}
  function ago(ns) {{
    const s = ns / 1e9;
    if (s < 1) return "Less than a second";
    if (s < 60) return Math.round(s) + " seconds";
    if (s < 3600) return Math.round(s / 60) + " minutes";
    return Math.round(s / 3600) + " hours";
  }}
  // What `ps -a --at T` showed for a container: its STATUS column at T.
  function statusAt(obj, t) {{
    if (t < obj.created) return "did not exist yet";
    if (obj.removed && t >= obj.removed_at) return "removed";
    let last = null;
    for (const r of obj.runs) {{ if (r.started_at <= t) last = r; }}
    if (last === null) return obj.kind === "container" ? "Created" : "exists";
    if (!last.ended_at || t < last.ended_at) {{
      return "Up " + ago(t - last.started_at) + " (run " + last.number + ", pid " + last.pid +
        ")";
    }}
    const code = last.exit_code === null ? "?" : last.exit_code;
    return "Exited (" + code + ") " + ago(t - last.ended_at) + " ago" +
      (last.oom_killed ? ", OOM killed" : "");
  }}
  for (const svg of svgs) {{
    svg.addEventListener("click", function (ev) {{
      const box = svg.getBoundingClientRect();
      const x = (ev.clientX - box.left) * (1100 / box.width);
      const frac = Math.min(Math.max((x - data.left) / data.width, 0), 1);
      showAt(Math.round(data.t0 + frac * (data.t1 - data.t0)));
    }});
  }}
  function showAt(t) {{
    const x = data.left + (t - data.t0) / (data.t1 - data.t0) * data.width;
    for (const cursor of document.querySelectorAll("line.cursor")) {{
      cursor.setAttribute("x1", x); cursor.setAttribute("x2", x);
    }}
    const secs = Math.floor(t / 1e9), nanos = String(t % 1e9).padStart(9, "0");
    const lines = data.objects.map(o => (o.name || o.id.slice(0, 12)) + " — " + statusAt(o, t));
    panel.textContent = "At " + stamp(t) + ": " + lines.join("\\n") +
      "\\nThe whole host then: shipslog ps -a --at " + secs + "." + nanos;
    panel.dataset.at = String(t);
  }}
  // A moment can be linked to: PAGE.html#at=<Unix ns> opens with it shown.
  const linked = /^#at=(\\d+)$/.exec(window.location.hash);
  if (linked) showAt(Number(linked[1]));
  document.body.dataset.ready = String(document.querySelectorAll("rect.run").length);
}})();
</script>
</body></html>
"""
