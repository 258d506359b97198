"""The report's charts, drawn with matplotlib (Agg) from the report dict alone.

Each chart is returned as PNG bytes, written as files for mail and slides (the page
links them; its own charts are the interactive ones). The map draws the shipped outlines (``outlines``) and the
metros on them, equirectangular: no tile server, no network.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

COLORS = {
    "neocloud": "#7b3fe4", "hyperscaler": "#f28e2b", "cdn": "#4e79a7", "isp_regional": "#59a14f",
    "isp_tier1": "#1b7837", "hosting": "#e15759", "other": "#9c755f", "unknown": "#bab0ac",
}
DPI = 110


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buf.getvalue()


def human_bits(x: float) -> str:
    """Three significant figures in the largest unit that keeps the number under 1000
    (999.96 Gb prints as 1.00 Tb, never 1e+03 Gb)."""
    units = (("Pb", 1e15), ("Tb", 1e12), ("Gb", 1e9), ("Mb", 1e6), ("kb", 1e3), ("b", 1.0))
    for i, (unit, f) in enumerate(units):
        if abs(x) >= f or unit == "b":
            v = x / f
            text = f"{v:.{2 if abs(v) < 10 else 1 if abs(v) < 100 else 0}f}"
            if abs(float(text)) >= 1000 and i > 0:
                unit, f = units[i - 1]
                text = f"{x / f:.2f}"
            return f"{text} {unit}"
    return f"{x:.3g} b"


def shares(report: dict) -> bytes:
    cats = [c["id"] for c in report["categories"]]
    labels = [c["label"] for c in report["categories"]]
    cur = [report["shares"][c]["share_pct"] for c in cats]
    prev = [report["shares"][c]["prev_share_pct"] for c in cats]
    fig, ax = plt.subplots(figsize=(8, 4))
    y = np.arange(len(cats))
    if report["previous_quarter_present"]:
        ax.barh(y + 0.2, prev, 0.38, color="#d0d0d0", label=report["previous_quarter"])
    ax.barh(y - 0.2, cur, 0.38, color=[COLORS[c] for c in cats], label=report["quarter"])
    for i, c in enumerate(cats):
        ch = report["shares"][c]["change_pts"]
        txt = f"{cur[i]:.1f}%" + (f"  ({ch:+.1f} pts)" if ch is not None else "")
        ax.text(cur[i] + 0.5, y[i] - 0.2, txt, va="center", fontsize=8)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("share of bits (%)")
    ax.set_xlim(0, max(cur + [p or 0 for p in prev] + [1]) * 1.3)
    ax.set_title(f"Traffic share by peer category, {report['quarter']}")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def monthly(report: dict) -> bytes:
    cats = [c["id"] for c in report["categories"]]
    months = [m["month"] for m in report["monthly"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    bottom = np.zeros(len(months))
    for c, lab in zip(cats, [c["label"] for c in report["categories"]], strict=True):
        v = np.array([m["categories"][c]["bits"] for m in report["monthly"]]) / 1e15
        ax.bar(months, v, bottom=bottom, color=COLORS[c], label=lab)
        bottom += v
    ax.set_ylabel("petabits per month")
    ax.set_title("Monthly traffic by peer category")
    ax.legend(fontsize=7, ncol=4, loc="upper left")
    ax.set_ylim(0, max(bottom.max() if len(bottom) else 1, 1e-9) * 1.3)
    return _png(fig)


def heatmap(report: dict, key: str, title: str, fmt) -> bytes:
    h = report["heatmap"]
    data = np.array(h[key], dtype=float)
    cats = [c["label"] for c in report["categories"]]
    fig, ax = plt.subplots(figsize=(9, 0.45 * max(len(h["metros"]), 2) + 1.5))
    masked = np.ma.masked_less_equal(data, 0)
    vmax = masked.max() if masked.count() else 1.0
    vmin = masked.min() if masked.count() else 0.1
    im = ax.imshow(masked, aspect="auto", cmap="viridis",
                   norm=LogNorm(vmin=vmin, vmax=max(vmax, vmin * 1.0001)))
    ax.set_xticks(range(len(cats)), cats, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(h["metros"])), h["metros"], fontsize=8)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if data[i, j] > 0:
                ax.text(j, i, fmt(data[i, j]), ha="center", va="center", fontsize=6.5,
                        color="white" if data[i, j] < np.sqrt(vmin * vmax) else "black")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _png(fig)


def _bubbles(ax, ms, scale: float, labels: int) -> None:
    bits = np.array([m["bits"] for m in ms])
    size = 12 + scale * np.sqrt(bits / bits.max())
    ax.scatter([m["lon"] for m in ms], [m["lat"] for m in ms], s=size, alpha=0.6,
               c=[COLORS[m["top_category"]] for m in ms], edgecolors="black", linewidths=0.5)
    for m in sorted(ms, key=lambda m: -m["bits"])[:labels]:
        ax.annotate(m["metro"], (m["lon"], m["lat"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")


def _outlines(ax, fc: dict, lat0: float = 0.0) -> None:
    """Shipped country or state outlines as filled polygons (equirectangular)."""
    from matplotlib.collections import PolyCollection

    polys = []
    for f in fc["features"]:
        g = f["geometry"]
        for p in (g["coordinates"] if g["type"] == "MultiPolygon" else [g["coordinates"]]):
            polys.append(np.array(p[0]))
    ax.add_collection(PolyCollection(polys, facecolors="#e4e8ee", edgecolors="white", linewidths=0.4))
    ax.set_facecolor("#f5f8fb")
    ax.set_aspect(1 / np.cos(np.radians(lat0)))


def world_map(report: dict) -> bytes:
    """World and contiguous-US panels on the shipped outlines (Natural Earth, US Census)."""
    from .outlines import countries, states

    ms = report["metros"]
    fig, (ax, us) = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1.6, 1]})
    _outlines(ax, countries())
    _outlines(us, states(), 38)
    ax.set_xlim(-170, 192)
    ax.set_ylim(-60, 84)
    us.set_xlim(-126, -66)
    us.set_ylim(24, 50)
    if ms:
        _bubbles(ax, ms, 700, 8)
        in_us = [m for m in ms if -126 <= m["lon"] <= -66 and 24 <= m["lat"] <= 50]
        if in_us:
            _bubbles(us, in_us, 1200, 14)
    for c, col in COLORS.items():
        ax.scatter([], [], c=col, label=c, s=30)
    ax.legend(fontsize=7, loc="lower left", title="top category", title_fontsize=7)
    ax.set_title("Traffic by peer metro: world (bubble area ~ bits)", fontsize=10)
    us.set_title("Contiguous US", fontsize=10)
    for a in (ax, us):
        a.set_xticks([])
        a.set_yticks([])
    return _png(fig)


def all_charts(report: dict) -> dict[str, bytes]:
    return {
        "shares": shares(report),
        "monthly": monthly(report),
        "magnitude": heatmap(report, "bits_per_ip", "Magnitude: bits per unique peer IP (metro x category)",
                             human_bits),
        "uniqueness": heatmap(report, "unique_ips", "Uniqueness: unique peer IPs (metro x category)",
                              lambda v: f"{int(v):,}"),
        "map": world_map(report),
    }
