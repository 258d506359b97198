"""The raw scan on Ray (issue 20): ``flows report --ray`` and ``flows rollup --ray`` on a real
two-node Ray cluster on loopback give what one process gives: the same report.json, and
rollups that cover the store and feed the same report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from trunkline.cli.main import cli
from trunkline.flows import scan
from trunkline.flows.enrich import Enricher
from trunkline.flows.report import build
from trunkline.flows.simulate import PREVIOUS_SHIFT, simulate
from trunkline.flows.stats import Quarter
from trunkline.flows.store import FlowStore

Q = Quarter(2025, 4)
MiB = 1 << 20


@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'trunkline[ray]')")
    from trunkline.testing.ray_cluster import local_ray_cluster

    with local_ray_cluster(("a", "b"), object_store_memory=80 * MiB) as c:
        yield c


@pytest.fixture(scope="module")
def enricher(shared_data: Path) -> Enricher:
    return Enricher.from_dir(shared_data / "enrich")


@pytest.fixture(scope="module")
def raw_store(enricher, tmp_path_factory) -> Path:
    """A store written without rollups (as before issue 20)."""
    root = tmp_path_factory.mktemp("rayscan") / "store"
    store = FlowStore(root)
    simulate(Q.prev(), store, enricher, 15_000, seed=5, drift=0.5, shift=PREVIOUS_SHIFT, batch=4_000)
    simulate(Q, store, enricher, 30_000, seed=5, batch=5_000)
    return root


def _strip(r: dict) -> dict:
    r = dict(r)
    r.pop("generated_at")
    r.pop("source")
    return r


def test_report_on_ray_equals_one_process(ray_cluster, raw_store, enricher, shared_data):
    one = build(FlowStore(raw_store), Q, enricher)[0]
    assert one["source"]["kind"] == "raw"
    ray = build(FlowStore(raw_store), Q, enricher, source="raw", ray="auto",
                enrich_args={"data_dir": str(shared_data / "enrich")})[0]
    assert ray["source"]["kind"] == "raw-ray"
    assert json.dumps(_strip(ray), sort_keys=True) == json.dumps(_strip(one), sort_keys=True)


def test_rollup_backfill_on_ray_then_report_from_rollups(ray_cluster, raw_store, enricher, shared_data,
                                                          tmp_path):
    import shutil

    root = tmp_path / "store"
    shutil.copytree(raw_store, root)
    ref = build(FlowStore(root), Q, enricher)[0]
    res = CliRunner().invoke(cli, ["flows", "rollup", "--store", str(root), "--ray", "auto", "--json",
                                   "--enrich-data", str(shared_data / "enrich")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["days"] == len(scan.raw_days(FlowStore(root))) and out["rows"]["5m"] > 0
    assert scan.coverage(FlowStore(root), enricher, Q.prev().start, Q.end) == ""
    rep = build(FlowStore(root), Q, enricher)[0]
    assert rep["source"]["kind"] == "rollups"
    assert _strip(rep) == _strip(ref)
