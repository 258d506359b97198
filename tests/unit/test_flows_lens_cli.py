"""The flow-lens commands end to end on the real enrichment data: classify explains,
simulate is deterministic and labelled, report writes the three outputs, elephants lists
the simulator's sessions, and bad input is one line with exit code 2."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from trunkline.cli.main import cli
from trunkline.flows.stats import arrow
from trunkline.flows.store import FlowStore


@pytest.fixture(scope="module")
def env(shared_data):
    return {"TRUNKLINE_ENRICH_DATA": str(shared_data / "enrich")}


def run(env, *args):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_classify_explains(env):
    r = run(env, "flows", "classify", "34.120.0.1")
    assert r.exit_code == 0, r.output
    assert "hyperscaler" in r.output and "AS396982" in r.output and "Google Cloud" in r.output
    r = run(env, "flows", "classify", "AS33425", "--json")
    d = json.loads(r.output)
    assert (d["category"], d["rule"], d["asn"]) == ("neocloud", "CoreWeave", 33425)
    r = run(env, "flows", "classify", "no-such-thing")
    assert r.exit_code == 2 and "error: not an IP address or ASN" in r.output


def test_classify_with_user_taxonomy(env, tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('[[rules]]\nname = "partner"\ncategory = "cdn"\nasns = [33425]\nsource = "us"\n')
    d = json.loads(run(env, "flows", "classify", "AS33425", "--taxonomy", str(f), "--json").output)
    assert (d["category"], d["rule"], d["rule_origin"]) == ("cdn", "partner", str(f))
    f.write_text('[[rules]]\ncategory = "bogus"\nasns = [1]\n')
    r = run(env, "flows", "classify", "AS1", "--taxonomy", str(f))
    assert r.exit_code == 2 and "category must be one of" in r.output


def test_simulate_report_elephants(env, tmp_path):
    store = tmp_path / "store"
    r = run(env, "flows", "simulate", "--quarter", "2025Q4", "--out", str(store), "--flows", "30000")
    assert r.exit_code == 0, r.output
    t = arrow(FlowStore(store).connect(), "SELECT * FROM flows")
    assert t.num_rows == 45000  # 30000 + 15000 for the previous quarter
    assert pc.all(pc.equal(t.column("flow_type"), "simulated")).as_py()
    assert set(pc.unique(t.column("exporter")).to_pylist()) <= {"sim-us-west-1", "sim-us-east-1",
                                                                 "sim-ca-east-1", "sim-eu-central-1"}
    out = tmp_path / "rep"
    r = run(env, "flows", "report", "--store", str(store), "--quarter", "2025Q4", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "SIMULATED" in r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["simulated"] is True and rep["totals"]["flows"] == 30000
    assert sum(v["share_pct"] for v in rep["shares"].values()) == pytest.approx(100.0, abs=1e-4)
    assert rep["shares"]["neocloud"]["change_pts"] > 0  # the simulator grows neoclouds
    assert {p.name for p in (out / "charts").iterdir()} == {
        "shares.png", "monthly.png", "map.png", "magnitude.png", "uniqueness.png"}
    assert rep["elephants"]["count"] > 0
    assert all(e["category"] in ("neocloud", "hyperscaler", "hosting") for e in rep["elephants"]["top"])
    r = run(env, "flows", "elephants", "--store", str(store), "--quarter", "2025Q4", "--json", "--top", "3")
    eps = json.loads(r.output)
    assert len(eps) == 3 and eps[0]["bytes"] >= eps[1]["bytes"] >= eps[2]["bytes"]
    r = run(env, "flows", "report", "--store", str(store), "--quarter", "2024Q1", "--out", str(out))
    assert r.exit_code == 2 and "no flows in 2024Q1" in r.output
    r = run(env, "flows", "report", "--store", str(store), "--quarter", "Q5", "--out", str(out))
    assert r.exit_code == 2 and "quarter must look like 2025Q4" in r.output
    for far in ("9999Q4", "0000Q1"):   # a datetime past year 9999 was a traceback
        r = run(env, "flows", "report", "--store", str(store), "--quarter", far, "--out", str(out))
        assert r.exit_code == 2 and "the year must be 1970..9998" in r.output, r.output


def test_simulator_is_deterministic(env, tmp_path):
    tables = []
    for name in ("a", "b"):
        run(env, "flows", "simulate", "--quarter", "2025Q2", "--out", str(tmp_path / name),
            "--flows", "5000", "--no-previous", "--seed", "11")
        tables.append(arrow(FlowStore(tmp_path / name).connect(),
            "SELECT * FROM flows ORDER BY time_start, src_addr, dst_addr, src_port, dst_port, bytes"))
    assert tables[0].num_rows == 5000
    assert tables[0].equals(tables[1])
