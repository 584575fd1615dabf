"""One self-contained HTML page per report: plotly.js inlined once, no remote script, opens offline.

Shared by the walk-forward and the backtest reports, so they look alike.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0;display:block;overflow-x:auto}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}.verdict{padding:1em;background:#fff7e0;border-left:4px solid #e0a000}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:0 2.5em;align-items:flex-start}
.cards table td:first-child,.cards table th:first-child{text-align:left}
.note{color:#555;font-size:13px}
"""


def table(frame: pd.DataFrame) -> str:
    """Return `frame` as an HTML table (floats to four significant digits)."""
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)


def pairs_table(rows: Sequence[tuple[str, str]], heading: str = "") -> str:
    """Return a two-column table of already formatted (name, value) rows."""
    head = f"<tr><th colspan='2'>{html.escape(heading)}</th></tr>" if heading else ""
    body = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(value)}</td></tr>"
        for name, value in rows
    )
    return f"<table>{head}{body}</table>"


def figure_blocks(figures: Sequence[go.Figure], ids: Sequence[str | None] = ()) -> list[str]:
    """Return each figure as an HTML block; the first one carries plotly.js, inlined.

    `ids` names the figures' elements (None: plotly's random id), e.g. for `autoscale_script`.
    """
    named = list(ids) + [None] * (len(figures) - len(ids))
    return [
        fig.to_html(full_html=False, include_plotlyjs=(i == 0), default_width="100%", div_id=name)
        for i, (fig, name) in enumerate(zip(figures, named, strict=True))
    ]


_AUTOSCALE = """
(function () {
  var gd = document.getElementById(%(id)s), AXES = %(axes)s;
  if (!gd || !gd.on || !gd._fullData) return;
  function ms(v) {  // a date axis value (ms number or plotly date string) as epoch ms, UTC
    if (typeof v === "number") return v;
    var s = String(v).trim().replace(" ", "T");
    if (s.length === 10) s += "T00:00:00";
    return Date.parse(s.replace(/(Z|[+-]\\d\\d:?\\d\\d)$/, "") + "Z");
  }
  function fit(lo, hi) {  // the visible data's extent on each axis of AXES, padded by 5%%
    var found = {}, update = {};
    gd._fullData.forEach(function (t) {
      var axis = "yaxis" + (t.yaxis || "y").slice(1);
      if (AXES.indexOf(axis) < 0 || t.visible !== true || !t.x) return;
      var cols = t.type === "candlestick" ? [t.low, t.high] : [t.y];
      var r = found[axis] || (found[axis] = [Infinity, -Infinity]);
      for (var i = 0; i < t.x.length; i++) {
        var x = ms(t.x[i]);
        if (!(x >= lo && x <= hi)) continue;
        for (var c = 0; c < cols.length; c++) {
          var v = cols[c][i];
          if (v === null || v === undefined || isNaN(v)) continue;
          if (v < r[0]) r[0] = v;
          if (v > r[1]) r[1] = v;
        }
      }
    });
    Object.keys(found).forEach(function (axis) {
      var r = found[axis];
      if (!(r[1] >= r[0])) return;
      var pad = (r[1] - r[0]) * 0.05 || Math.abs(r[1]) * 0.01 || 1;
      update[axis + ".range"] = [r[0] >= 0 ? Math.max(0, r[0] - pad) : r[0] - pad, r[1] + pad];
    });
    return update;
  }
  gd.on("plotly_relayout", function (ev) {
    var hit = null;  // the time axis that changed: xaxis, or xaxis5 (the others match it)
    Object.keys(ev || {}).forEach(function (k) {
      hit = hit || /^(xaxis\\d*)\\.(range|autorange)/.exec(k);
    });
    if (!hit) return;
    if (hit[2] === "autorange") {
      var reset = {};
      AXES.forEach(function (a) { reset[a + ".autorange"] = true; });
      Plotly.relayout(gd, reset);
    } else {
      var range = gd._fullLayout[hit[1]].range;
      Plotly.relayout(gd, fit(ms(range[0]), ms(range[1])));
    }
  });
})();
"""


def autoscale_script(element_id: str, axes: Sequence[str]) -> str:
    """Return a script fitting a figure's `axes` (``yaxis2``...) to the visible time range."""
    code = _AUTOSCALE % {"id": json.dumps(element_id), "axes": json.dumps(list(axes))}
    return f"<script>{code}</script>"


def json_block(element_id: str, data: Any) -> str:
    """Return `data` as a JSON script element (not executed; read by tests and tools)."""
    text = json.dumps(data, sort_keys=True).replace("</", "<\\/")
    return f"<script type='application/json' id='{element_id}'>{text}</script>"


def write_page(path: Path, title: str, body: str) -> Path:
    """Write one HTML document with the shared style and return its path."""
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
