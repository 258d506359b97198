"""The HTML report in real headless Chromium: no console error, no network request, every
interactive chart drawn (non-blank pixels inside each chart's box on a full-page
screenshot), and a real mouse hover over a bar shows its value.

Method: Chromium's DevTools protocol over ``--remote-debugging-pipe`` (JSON messages,
NUL-separated, on fds 3 and 4), so no port is opened and no websocket library is needed.
Network.requestWillBeSent catches every request the page makes; any scheme other than
file:, data: and about: fails the test. Runtime/Log events catch console errors and
exceptions. A control page with a remote image proves the detector sees requests.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import require_tool
from trunkline.flows.enrich import Enricher
from trunkline.flows.report import write_report
from trunkline.flows.report.charts import human_bits
from trunkline.flows.simulate import PREVIOUS_SHIFT, SIM_REGIONS, simulate
from trunkline.flows.stats import Quarter
from trunkline.flows.store import FlowStore

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe"]


def _high(fd: int) -> int:
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Chromium:
    """A minimal DevTools-protocol client over the debugging pipe."""

    def __init__(self, exe: str, profile: Path):
        # every pipe end above fd 10 (close-on-exec), so the child's dup2 onto 3 and 4
        # always copies (and clears close-on-exec) whatever fds the parent happens to hold
        cmd_r, self._cmd_w, self._res_r, res_w = (_high(fd) for fd in (*os.pipe(), *os.pipe()))

        def fds():  # in the child: the pipe ends become fds 3 (commands) and 4 (responses)
            os.dup2(cmd_r, 3)
            os.dup2(res_w, 4)

        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL if not os.environ.get("TRUNKLINE_CHROMIUM_LOG") else None)
        os.close(cmd_r)
        os.close(res_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._res_r], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._res_r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        for e in self.events:
            if e.get("method") == method:
                return e
        while True:
            m = self._read(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - it may already be gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._res_r)


def load_page(exe: str, profile: Path, url: str, hover_selector: str | None = None) -> dict:
    """Open ``url``; return requests, console errors, chart boxes, the hover label shown
    over ``hover_selector`` and a screenshot."""
    c = Chromium(exe, profile)
    try:
        target = c.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = c.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for dom in ("Page", "Runtime", "Log", "Network"):
            c.send(f"{dom}.enable", session=s)
        c.send("Emulation.setDeviceMetricsOverride",
               {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=s)
        c.send("Page.navigate", {"url": url}, session=s)
        c.wait_event("Page.loadEventFired")
        time.sleep(0.5)  # let late requests and console messages arrive
        boxes = c.send("Runtime.evaluate", {"returnByValue": True, "expression": """
            JSON.stringify([...document.querySelectorAll('div.plot')].map(d => {
              const r = d.getBoundingClientRect();
              return {id: d.id, x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height,
                      drawn: !!d.querySelector('svg.main-svg')};
            }))"""}, session=s)["result"]["value"]
        hover = None
        if hover_selector:  # a real mouse move over the element, then read Plotly's hover label
            pt = json.loads(c.send("Runtime.evaluate", {"returnByValue": True, "expression": f"""
                (() => {{ const e = document.querySelector({json.dumps(hover_selector)});
                  if (!e) return 'null';
                  e.scrollIntoView({{block: 'center'}});
                  const r = e.getBoundingClientRect();
                  return JSON.stringify({{x: r.left + r.width / 2, y: r.top + r.height / 2}}); }})()"""},
                session=s)["result"]["value"])
            if pt:
                time.sleep(0.2)
                c.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": pt["x"], "y": pt["y"]}, session=s)
                time.sleep(0.5)
                hover = c.send("Runtime.evaluate", {"returnByValue": True, "expression":
                               "[...document.querySelectorAll('.hoverlayer')].map(h => h.textContent).join('|')"},
                               session=s)["result"]["value"]
            c.send("Runtime.evaluate", {"expression": "window.scrollTo(0, 0)"}, session=s)
        size = c.send("Page.getLayoutMetrics", session=s)["cssContentSize"]
        shot = c.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}},
            session=s, timeout=60)["data"]
        events = list(c.events)
    finally:
        c.close()
    requests = [e["params"]["request"]["url"] for e in events
                if e.get("method") == "Network.requestWillBeSent"]
    errors = [e["params"] for e in events if
              (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    return {"requests": requests, "errors": errors, "boxes": json.loads(boxes), "hover": hover,
            "png": base64.b64decode(shot)}


def remote(requests: list[str]) -> list[str]:
    return [u for u in requests if not u.startswith(("file:", "data:", "about:"))]


@pytest.fixture(scope="module")
def report_dir(shared_data, tmp_path_factory) -> Path:
    e = Enricher.from_dir(shared_data / "enrich")
    root = tmp_path_factory.mktemp("chromium")
    store = FlowStore(root / "store")
    q = Quarter.parse("2025Q4")
    simulate(q.prev(), store, e, flows=20_000, seed=1, shift=PREVIOUS_SHIFT)
    simulate(q, store, e, flows=40_000, seed=1)
    write_report(store, q, e, root / "report", regions=SIM_REGIONS, home_country="US")
    return root / "report"


PLOTS = ("shares", "directions", "sankey", "monthly", "magnitude_time", "regions", "regions_ingress",
         "regions_egress", "countries", "countries_excl_home", "us_states", "metro_magnitude",
         "metro_uniqueness")


def test_report_renders_offline_without_errors(report_dir, tmp_path):
    exe = require_tool("chromium")
    page = load_page(exe, tmp_path / "profile", (report_dir / "report.html").as_uri(),
                     hover_selector="#fig-monthly .point path")
    if os.environ.get("TRUNKLINE_REPORT_SCREENSHOT"):
        Path(os.environ["TRUNKLINE_REPORT_SCREENSHOT"]).write_bytes(page["png"])
    assert page["errors"] == []
    assert remote(page["requests"]) == []
    assert page["requests"], "the detector saw no request at all (not even the page)"
    boxes = {b["id"]: b for b in page["boxes"]}
    assert set(boxes) == {f"fig-{n}" for n in PLOTS}
    img = Image.open(io.BytesIO(page["png"])).convert("RGB")
    for name, b in boxes.items():
        assert b["drawn"] and b["w"] > 200 and b["h"] > 150, name
        crop = img.crop((int(b["x"]), int(b["y"]), int(b["x"] + b["w"]), int(b["y"] + b["h"])))
        px = np.asarray(crop).reshape(-1, 3)
        non_white = float((px.min(axis=1) < 235).mean())
        colours = len(np.unique(np.asarray(crop.resize((120, 80))).reshape(-1, 3), axis=0))
        assert non_white > 0.02 and colours > 8, (name, non_white, colours)
    # hovering the first bar of the monthly chart shows its type, month and value
    rep = json.loads((report_dir / "report.json").read_text())
    first, cat = rep["monthly"][0], rep["categories"][0]
    v = first["categories"][cat["id"]]
    want = f"{cat['label']} {first['month']}: {human_bits(v['bits'])} ({v['share_pct']:.2f}%)"
    assert page["hover"] and want in page["hover"], (want, page["hover"])
    # the PNG exports are written and linked, not embedded
    html = (report_dir / "report.html").read_text()
    for n in ("shares", "monthly", "map", "magnitude", "uniqueness"):
        assert (report_dir / "charts" / f"{n}.png").stat().st_size > 10_000
        assert f'href="charts/{n}.png"' in html
    assert "SIMULATED" in html


def test_detector_sees_requests_and_errors(tmp_path):
    """Control: a page that fetches a loopback URL and throws must fail both checks."""
    exe = require_tool("chromium")
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                   '<img src="http://127.0.0.1:9/x.png"><script>console.error("boom");'
                   "</script></body></html>")
    page = load_page(exe, tmp_path / "profile", bad.as_uri())
    assert remote(page["requests"]) == ["http://127.0.0.1:9/x.png"]
    assert page["errors"]
