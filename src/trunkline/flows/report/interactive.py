"""The page's interactive charts, as Plotly figure specs (plain dicts) made from the report
dict alone; ``html`` inlines plotly.min.js and draws them, so hovering shows each value
and clicking a legend entry hides a category, with nothing fetched.

Maps are drawn on cartesian axes from the shipped outlines (``outlines``), one filled
trace per country or state: Plotly's own geo subplots would fetch their base map from a
CDN, which an offline page must never do.
"""

from __future__ import annotations

import math

from .charts import COLORS, human_bits
from .outlines import countries, states

FONT = {"family": "system-ui, sans-serif", "size": 12}
VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
           "#b5de2b", "#fde725"]


def _layout(title: str, **kw) -> dict:
    return {"title": {"text": title, "font": {"size": 15}}, "font": FONT, "margin": {"l": 60, "r": 20, "t": 50, "b": 60},
            "paper_bgcolor": "white", "plot_bgcolor": "white", "hovermode": "closest", **kw}


def _labels(r: dict) -> dict[str, str]:
    return {c["id"]: c["label"] for c in r["categories"]}


def shares(r: dict) -> dict:
    """Share of bits per category, this quarter and the previous one, by direction."""
    lab = _labels(r)
    cats = list(lab)
    traces = []
    for key, name, dash in (("share_pct", r["quarter"], None), ("prev_share_pct", r["previous_quarter"], "x")):
        traces.append({"type": "bar", "name": f"all traffic, {name}", "x": [lab[c] for c in cats],
                       "y": [r["shares"][c][key] for c in cats], "marker": {"pattern": {"shape": dash or ""}},
                       "hovertemplate": "%{x}: %{y:.2f}%<extra>" + name + "</extra>"})
    for d in ("ingress", "egress"):
        traces.append({"type": "bar", "name": f"{d}, {r['quarter']}", "x": [lab[c] for c in cats],
                       "y": [r["shares"][c][d]["share_pct"] for c in cats], "visible": "legendonly",
                       "hovertemplate": "%{x}: %{y:.2f}% of " + d + "<extra></extra>"})
    return {"data": traces, "layout": _layout("Share of bits by network type (% of the direction's bits)",
                                              barmode="group", yaxis={"title": "% of bits"})}


def monthly(r: dict) -> dict:
    lab = _labels(r)
    months = [m["month"] for m in r["monthly"]]
    traces = [{"type": "bar", "name": lab[c], "x": months, "marker": {"color": COLORS[c]},
               "y": [m["categories"][c]["bits"] for m in r["monthly"]],
               "customdata": [[human_bits(m["categories"][c]["bits"]), m["categories"][c]["share_pct"]]
                              for m in r["monthly"]],
               "hovertemplate": lab[c] + " %{x}: %{customdata[0]} (%{customdata[1]:.2f}%)<extra></extra>"}
              for c in lab]
    return {"data": traces, "layout": _layout("Monthly traffic by network type (click a type to hide it)",
                                              barmode="stack", yaxis={"title": "bits"},
                                              xaxis={"type": "category"})}


def directions(r: dict) -> dict:
    lab = _labels(r)
    traces = []
    for d, sign in (("ingress", 1), ("egress", -1)):
        traces.append({"type": "bar", "orientation": "h", "name": d, "y": [lab[c] for c in lab],
                       "x": [sign * r["shares"][c][d]["bits"] for c in lab],
                       "customdata": [[human_bits(r["shares"][c][d]["bits"]), r["shares"][c][d]["share_pct"] or 0]
                                      for c in lab],
                       "hovertemplate": "%{y} " + d + ": %{customdata[0]} (%{customdata[1]:.2f}% of " + d
                                        + ")<extra></extra>"})
    return {"data": traces, "layout": _layout("Ingress (right) and egress (left) by network type",
                                              barmode="relative", xaxis={"title": "bits"},
                                              yaxis={"autorange": "reversed"}, margin={"l": 110, "r": 20, "t": 50, "b": 50})}


def sankey(r: dict) -> dict:
    """Network types (ingress) -> our regions -> network types (egress)."""
    lab = _labels(r)
    regions = r["regions"]["regions"]
    cats = list(lab)
    nodes = [f"{lab[c]} (in)" for c in cats] + regions + [f"{lab[c]} (out)" for c in cats]
    colors = [COLORS[c] for c in cats] + ["#555"] * len(regions) + [COLORS[c] for c in cats]
    src, dst, val, col = [], [], [], []
    for x in r["sankey"]:
        if x["bits"] <= 0 or x["region"] not in regions:
            continue
        ci, ri = cats.index(x["category"]), len(cats) + regions.index(x["region"])
        if x["direction"] == "ingress":
            src.append(ci)
            dst.append(ri)
        else:
            src.append(ri)
            dst.append(len(cats) + len(regions) + ci)
        val.append(x["bits"])
        col.append(COLORS[x["category"]] + "80")
    return {"data": [{"type": "sankey", "valueformat": ".3s", "valuesuffix": "b",
                      "node": {"label": nodes, "color": colors, "pad": 12},
                      "link": {"source": src, "target": dst, "value": val, "color": col}}],
            "layout": _layout("Both directions: network types -> our regions (ingress), regions -> network types (egress)",
                              height=520)}


REGION_METRICS = [  # (key, label, unit)
    ("avg_bps", "Traffic: monthly average rate", "bits/s"),
    ("p95_bps", "Traffic: monthly 95th-percentile rate", "bits/s"),
    ("bits_per_ip", "Magnitude: bits per unique IP", "bits"),
    ("bits_per_ip_p95", "Magnitude: 95th percentile of bits per IP", "bits"),
    ("unique_ips", "Uniqueness: distinct IPs in the month", "IPs"),
    ("daily_unique_ips_avg", "Uniqueness: daily distinct IPs, average", "IPs"),
    ("daily_unique_ips_p95", "Uniqueness: daily distinct IPs, 95th percentile", "IPs"),
]


def region_heatmap(r: dict, direction: str = "all") -> dict:
    """Region x month (rows) x network type (columns); a menu picks the metric."""
    lab = _labels(r)
    cats = list(lab)
    reg = r["regions"]
    rows = [(g, m) for g in reg["regions"] for m in reg["months"]]
    cell = {(x["region"], x["month"], x["category"]): x for x in reg["cells"] if x["direction"] == direction}
    traces, buttons = [], []
    for i, (key, label, unit) in enumerate(REGION_METRICS):
        z = [[(cell.get((g, m, c)) or {}).get(key) for c in cats] for g, m in rows]
        logz = [[math.log10(v) if v else None for v in row] for row in z]
        text = [[("" if v is None else (human_bits(v) + ("/s" if unit == "bits/s" else "") if unit != "IPs"
                                         else f"{v:,.2f}".rstrip("0").rstrip(".")))
                 for v in row] for row in z]
        traces.append({"type": "heatmap", "x": [lab[c] for c in cats], "y": [f"{g} {m}" for g, m in rows],
                       "z": logz, "text": text, "texttemplate": "%{text}", "colorscale": "Viridis",
                       "visible": i == 0, "hoverongaps": False, "colorbar": {"title": {"text": "log10"}},
                       "hovertemplate": "%{y} %{x}<br>" + label + ": %{text}<extra></extra>"})
        buttons.append({"label": label, "method": "update",
                        "args": [{"visible": [j == i for j in range(len(REGION_METRICS))]},
                                 {"title.text": f"Regions x network type x month ({direction}): {label}"}]})
    return {"data": traces, "layout": _layout(
        f"Regions x network type x month ({direction}): {REGION_METRICS[0][1]}",
        height=max(300, 28 * len(rows) + 160), yaxis={"autorange": "reversed"},
        margin={"l": 150, "r": 20, "t": 110, "b": 60},
        updatemenus=[{"buttons": buttons, "x": 0, "xanchor": "left", "y": 1.0, "yanchor": "bottom",
                      "pad": {"b": 30}}])}


def magnitude_over_time(r: dict) -> dict:
    lab = _labels(r)
    months = [m["month"] for m in r["monthly"]]
    traces = [{"type": "scatter", "mode": "lines+markers", "name": lab[c], "x": months,
               "y": [m["categories"][c]["bits_per_ip"] for m in r["monthly"]],
               "line": {"color": COLORS[c], "width": 3 if c in ("neocloud", "hyperscaler") else 1.5},
               "visible": True if c in ("neocloud", "hyperscaler") else "legendonly",
               "hovertemplate": lab[c] + " %{x}: %{y:.3s}b per IP<extra></extra>"} for c in lab]
    return {"data": traces, "layout": _layout("Magnitude over time: bits per unique peer IP, monthly",
                                              yaxis={"title": "bits per IP", "type": "log"},
                                              xaxis={"type": "category"})}


def metro_heatmap(r: dict, key: str, title: str) -> dict:
    lab = _labels(r)
    h = r["heatmap"]
    z = h[key]
    return {"data": [{"type": "heatmap", "x": [lab[c] for c in h["categories"]], "y": h["metros"],
                      "z": [[math.log10(v) if v else None for v in row] for row in z],
                      "text": [[(human_bits(v) if key == "bits_per_ip" else f"{v:,}") if v else "" for v in row]
                               for row in z],
                      "texttemplate": "%{text}", "colorscale": "Viridis", "hoverongaps": False,
                      "colorbar": {"title": {"text": "log10"}},
                      "hovertemplate": "%{y} %{x}: %{text}<extra></extra>"}],
            "layout": _layout(title, height=max(300, 26 * len(h["metros"]) + 140),
                              yaxis={"autorange": "reversed"}, margin={"l": 130, "r": 20, "t": 50, "b": 80})}


def _colour(v: float, lo: float, hi: float) -> str:
    f = 0.0 if hi <= lo else (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    return VIRIDIS[min(int(f * len(VIRIDIS)), len(VIRIDIS) - 1)]


def _xy(geom: dict) -> tuple[list, list]:
    polys = geom["coordinates"] if geom["type"] == "MultiPolygon" else [geom["coordinates"]]
    xs, ys = [], []
    for p in polys:
        for ring in p:
            xs += [pt[0] for pt in ring] + [None]
            ys += [pt[1] for pt in ring] + [None]
    return xs, ys


def choropleth(title: str, outlines: dict, values: dict[str, tuple[float, str]], *,
               bubbles: list[dict] | None = None, lat0: float = 0.0,
               xrange: list | None = None, yrange: list | None = None) -> dict:
    """Filled outlines coloured by value (log scale), hover text per area, optional metro
    bubbles; ``values`` maps an outline id to (value, hover text)."""
    pos = [v for v, _ in values.values() if v > 0]
    lo, hi = (min(pos), max(pos)) if pos else (1.0, 1.0)
    empty_x, empty_y, traces = [], [], []
    for f in outlines["features"]:
        xs, ys = _xy(f["geometry"])
        v = values.get(f["id"])
        if not v or v[0] <= 0:
            empty_x += xs
            empty_y += ys
            continue
        traces.append({"type": "scatter", "x": xs, "y": ys, "fill": "toself", "mode": "lines",
                       "line": {"color": "white", "width": 0.5}, "fillcolor": _colour(v[0], lo, hi),
                       "hoveron": "fills", "text": v[1], "hoverinfo": "text", "showlegend": False,
                       "name": f["properties"]["name"]})
    traces.insert(0, {"type": "scatter", "x": empty_x, "y": empty_y, "fill": "toself", "mode": "lines",
                      "line": {"color": "white", "width": 0.5}, "fillcolor": "#dfe3e8",
                      "hoverinfo": "skip", "showlegend": False, "name": "no traffic"})
    # the colour scale, as an invisible marker trace carrying the colour bar
    traces.append({"type": "scatter", "x": [None], "y": [None], "mode": "markers", "showlegend": False,
                   "hoverinfo": "skip", "marker": {"colorscale": [[i / 9, c] for i, c in enumerate(VIRIDIS)],
                                                   "cmin": math.log10(lo), "cmax": math.log10(hi),
                                                   "color": [math.log10(lo)], "showscale": True,
                                                   "colorbar": {"title": {"text": "log10 bits"}}}})
    if bubbles:
        top = max(b["bits"] for b in bubbles)
        traces.append({"type": "scatter", "mode": "markers", "name": "metros", "x": [b["lon"] for b in bubbles],
                       "y": [b["lat"] for b in bubbles], "text": [b["text"] for b in bubbles], "hoverinfo": "text",
                       "marker": {"size": [6 + 34 * math.sqrt(b["bits"] / top) for b in bubbles],
                                  "color": [COLORS.get(b["category"], "#444") for b in bubbles],
                                  "line": {"color": "black", "width": 0.6}, "opacity": 0.75}})
    axis = {"visible": False, "showgrid": False, "zeroline": False}
    return {"data": traces, "layout": _layout(
        title, height=460, showlegend=False, margin={"l": 10, "r": 10, "t": 50, "b": 10},
        xaxis={**axis, **({"range": xrange} if xrange else {})},
        yaxis={**axis, "scaleanchor": "x", "scaleratio": 1 / math.cos(math.radians(lat0)),
               **({"range": yrange} if yrange else {})})}


def _share_text(name: str, bits: float, pct: float | None, extra: str = "") -> str:
    return f"{name}: {human_bits(bits)} ({pct or 0:.2f}%){extra}"


def maps(r: dict) -> dict[str, dict]:
    g = r["geo"]
    lab = _labels(r)
    out = {}
    cv = {c["country"]: (c["bits"], _share_text(c["country"], c["bits"], c["share_pct"],
                                                f"<br>top type {lab[c['top_category']]}, {c['unique_ips']:,} IPs"))
          for c in g["countries"]}
    bubbles = [{"lon": m["lon"], "lat": m["lat"], "bits": m["bits"], "category": m["top_category"],
                "text": f"{m['metro']}: {human_bits(m['bits'])} ({m['share_pct']:.2f}%), {m['unique_ips']:,} IPs"}
               for m in r["metros"]]
    out["countries"] = choropleth("Countries: bits per peer country, and metros (bubbles)", countries(), cv,
                                  bubbles=bubbles, xrange=[-170, 192], yrange=[-58, 84])
    if g["home_country"]:
        ev = {c["country"]: (c["bits"], _share_text(c["country"], c["bits"], c.get("share_excl_home_pct"),
                                                    f" of traffic outside {g['home_country']}"))
              for c in g["countries"] if c["country"] != g["home_country"]}
        out["countries_excl_home"] = choropleth(f"Countries excluding {g['home_country']}", countries(), ev,
                                                xrange=[-170, 192], yrange=[-58, 84])
    sv = {s["state"]: (s["bits"], _share_text(s["state"], s["bits"], s["share_pct"],
                                              f" of US traffic<br>top type {lab[s['top_category']]}, "
                                              f"{s['unique_ips']:,} IPs"))
          for s in g["us_states"]}
    us_b = [b for b in bubbles if -126 <= b["lon"] <= -66 and 24 <= b["lat"] <= 50]
    out["us_states"] = choropleth("US states (share of US traffic), and metros", states(), sv, bubbles=us_b,
                                  lat0=38, xrange=[-126, -66], yrange=[23, 50])
    return out


def all_figures(r: dict) -> dict[str, dict]:
    figs = {"shares": shares(r), "monthly": monthly(r), "directions": directions(r), "sankey": sankey(r),
            "regions": region_heatmap(r, "all"), "regions_ingress": region_heatmap(r, "ingress"),
            "regions_egress": region_heatmap(r, "egress"), "magnitude_time": magnitude_over_time(r),
            "metro_magnitude": metro_heatmap(r, "bits_per_ip", "Magnitude: bits per unique peer IP (metro x type)"),
            "metro_uniqueness": metro_heatmap(r, "unique_ips", "Uniqueness: unique peer IPs (metro x type)")}
    figs.update(maps(r))
    return figs
