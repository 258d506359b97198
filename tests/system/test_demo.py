"""The demo (``python -m trunkline.demo``, what ``make demo`` runs), small: it moves its
dataset up and down through a real SeaweedFS, verifies it, writes the report, prints the
summary and leaves no process behind; the report opens in headless Chromium with no
console error and no network request, every chart painted (screenshot test)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import require_tool
from test_report_chromium import PLOTS, load_page, remote
from trunkline.flows.store import FlowStore

CHARTS = ("shares", "monthly", "map", "magnitude", "uniqueness")


@pytest.fixture(scope="module")
def demo(shared_data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("demo") / "demo-out"
    env = {**os.environ, "TRUNKLINE_ENRICH_DATA": str(shared_data / "enrich")}
    env.pop("TRUNKLINE_CONFIG", None)
    r = subprocess.run([sys.executable, "-m", "trunkline.demo", "--size", "2MiB", "--shards", "8",
                        "--flows", "4000", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=240)
    return {"out": out, "rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(300)
def test_demo_summary_and_files(demo):
    assert demo["rc"] == 0, demo["stdout"] + demo["stderr"]
    text, out = demo["stdout"], demo["out"]
    for needle in ("trunkline demo OK", "verified   yes: 12/12 files by SHA-256",
                   "12 objects by trunkline verify",
                   "upload ", "download ", "Gbit/s", "SeaweedFS stopped", "elephants",
                   str(out / "report" / "report.html")):
        assert needle in text, (needle, text)
    pid = int(re.search(r"SeaweedFS S3 on http://127\.0\.0\.1:\d+ \(pid (\d+)\)", text).group(1))
    assert not _alive(pid), "the demo left its S3 server running"
    s = json.loads((out / "summary.json").read_text())
    assert s["ok"] and s["verified"] and s["verify_problems"] == []
    assert s["store_check"]["ok"] and s["store_check"]["compared"] == 12
    assert s["files"] == 12  # 8 shards and 4 index files
    assert s["bytes"] == s["upload"]["bytes"] == s["download"]["bytes"] > 2 << 20
    assert s["upload"]["gbps"] > 0 and s["download"]["gbps"] > 0
    # each connection of both transfers is in the store, one record per direction
    assert s["transfer_flows"] >= s["upload"]["connections"] + s["download"]["connections"]
    assert s["simulated_flows"] == 4000 and s["report_flows"] == 4000 + s["transfer_flows"]
    for f in ("report.html", "report.json", "sketches.parquet", *(f"charts/{c}.png" for c in CHARTS)):
        assert (out / "report" / f).stat().st_size > 0, f
    rep = json.loads((out / "report" / "report.json").read_text())
    assert rep["mover"]["flows"] == s["transfer_flows"] and rep["simulated"]
    # the flows went to the lake on the embedded S3 server and the report read them there;
    # the lake, copied down after, is a local store with the same files and records
    assert s["flow_lake"] == "demo:flows/lake" and "demo:flows/lake" in text
    # ... from its rollups (written beside the simulated flows, backfilled for the
    # transfer's own, compacted into monthly peer tables), which the copy holds too
    assert rep["source"]["kind"] == s["report_source"] == "rollups", rep["source"]
    copied = FlowStore(out / "flows")
    assert len(copied.files()) == s["flow_lake_files"] > 2
    assert copied.files("peers_1mo") and copied.files("5m")
    # ... and the quarters' elephant tables, which the report's elephants came from
    assert rep["source"]["elephants"]["kind"] == "elephants_1q" and copied.files("elephants_1q")
    rollup_files = sum(len(copied.files(lv)) for lv in ("5m", "1h", "1d", "peers", "peers_1mo", "mover",
                                                        "elephants_1q"))
    assert s["flow_lake_copy"]["ok"] and s["flow_lake_copy"]["objects"] == s["flow_lake_files"] + rollup_files
    n = copied.query("SELECT count(*) AS n FROM flows").column("n")[0].as_py()
    assert n == s["transfer_flows"] + 4000 + 2000  # + the previous quarter's half
    assert rep["mover"]["rtt_us_median"] and rep["mover"]["rtt_us_median"] > 0
    # bulky data removed, the demo's marker kept so the next run may wipe the directory
    assert not (out / "dataset").exists() and not (out / "s3").exists()
    assert (out / ".trunkline-demo").exists()


def test_demo_refuses_a_foreign_output_directory(tmp_path):
    (tmp_path / "precious.txt").write_text("not the demo's")
    r = subprocess.run([sys.executable, "-m", "trunkline.demo", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "not a demo output" in r.stderr
    assert (tmp_path / "precious.txt").read_text() == "not the demo's"


@pytest.mark.timeout(300)
def test_demo_report_screenshot_in_chromium(demo, tmp_path):
    exe = require_tool("chromium")
    assert demo["rc"] == 0, demo["stderr"]
    report = demo["out"] / "report" / "report.html"
    page = load_page(exe, tmp_path / "profile", report.as_uri())
    assert page["errors"] == []
    assert remote(page["requests"]) == []
    assert page["requests"], "the detector saw no request at all (not even the page)"
    shot = demo["out"] / "report" / "screenshot.png"
    shot.write_bytes(page["png"])
    img = Image.open(io.BytesIO(page["png"])).convert("RGB")
    boxes = {b["id"]: b for b in page["boxes"]}
    rep = json.loads((demo["out"] / "report" / "report.json").read_text())
    plots = set(PLOTS) - ({"countries_excl_home"} if not rep["geo"].get("home_country")
                          else set())
    assert set(boxes) == {f"fig-{n}" for n in plots}
    for name, b in boxes.items():
        assert b["drawn"] and b["w"] > 200 and b["h"] > 150, name
        crop = img.crop((int(b["x"]), int(b["y"]), int(b["x"] + b["w"]), int(b["y"] + b["h"])))
        non_white = float((np.asarray(crop).reshape(-1, 3).min(axis=1) < 235).mean())
        assert non_white > 0.03, (name, non_white)
    html = report.read_text()
    assert 'id="mover"' in html and "SIMULATED" in html
