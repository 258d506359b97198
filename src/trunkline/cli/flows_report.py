"""flows classify | simulate | report | elephants: parse flags, call the flow-lens API, print."""

from __future__ import annotations

import json
import time

import click

from .exits import guarded
from .flows_common import STORE_HELP, STORE_METAVAR, StoreLocation, open_store, warn_skipped


def _run(debug: bool, fn, *args, **kw):
    """Failures mapped to exit codes (``cli/exits.py``): UsageError 2, other TrunklineError
    and OSError 1, each as one line (traceback with --debug); anything else is a bug."""
    return guarded(debug, fn, *args, **kw)


def _quarter(debug: bool, text: str):
    """``--quarter`` parsed; the parser's ValueError can only mean a wrong argument."""
    from ..flows.stats import Quarter

    return guarded(debug, Quarter.parse, text, usage=(ValueError,))


def enrich_options(f):
    opts = [
        click.option("--enrich-data", type=click.Path(file_okay=False), default=None,
                     help="Directory with ip-asn/ and geo/ (default: $TRUNKLINE_ENRICH_DATA or ../shared/data/enrich)."),
        click.option("--taxonomy", type=click.Path(dir_okay=False), default=None,
                     help="TOML rules read before the shipped defaults (they override them)."),
        click.option("--metros", type=click.Path(dir_okay=False), default=None,
                     help="CSV of metro centres replacing the shipped list."),
        click.option("--asn-mmdb", type=click.Path(dir_okay=False), default=None,
                     help="Use a MaxMind-format ASN database instead of the range tables."),
        click.option("--debug", is_flag=True, help="Tracebacks on errors."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _enricher(enrich_data, taxonomy, metros, asn_mmdb):
    from ..flows.enrich import Enricher

    return Enricher.from_dir(enrich_data, taxonomy_file=taxonomy, metros_file=metros, asn_mmdb=asn_mmdb)


def _enrich_args(enrich_data, taxonomy, metros, asn_mmdb) -> dict:
    """Enricher.from_dir's arguments as absolute paths, for Ray tasks on other processes."""
    from pathlib import Path

    from ..flows.enrich import find_data_dir

    def a(p):
        return str(Path(p).resolve()) if p else None
    return {"data_dir": a(enrich_data or find_data_dir()), "taxonomy_file": a(taxonomy),
            "metros_file": a(metros), "asn_mmdb": a(asn_mmdb)}


@click.command()
@click.argument("query")
@enrich_options
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
def classify(query, enrich_data, taxonomy, metros, asn_mmdb, debug, as_json):
    """Explain how an IP address or ASN (e.g. 8.8.8.8, AS33425) is classified."""
    e = _run(debug, _enricher, enrich_data, taxonomy, metros, asn_mmdb)
    r = _run(debug, e.explain, query)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(f"{r['query']}: {r['category']}")
    click.echo(f"  ASN:      {('AS' + str(r['asn'])) if r.get('asn') else 'none found'}"
               + (f" ({r['org']})" if r.get("org") else ""))
    click.echo(f"  rule:     {r['rule']}" + (f" [{r['rule_origin']}]" if r.get("rule_origin") else ""))
    click.echo(f"  source:   {r.get('rule_source') or 'n/a'}")
    if "metro" in r:
        where = ", ".join(x for x in (r.get("city"), r.get("country")) if x) or "unknown"
        click.echo(f"  location: {where}" + (f" ({r['lat']:.3f}, {r['lon']:.3f})" if r.get("lat") is not None else ""))
        why = ""
        if r["metro"] == "no metro":
            why = ("  (no city: country centroid or unknown)" if not r.get("city")
                   else "  (city outside every metro radius)")
        click.echo(f"  metro:    {r['metro']}{why}")
        if r.get("is_local"):
            click.echo("  local:    yes ([local] table of the taxonomy)")


@click.command()
@click.option("--quarter", required=True, help="Quarter to simulate, e.g. 2025Q4.")
@click.option("--out", "out", required=True, type=StoreLocation(), metavar=STORE_METAVAR,
              help="The flow store to write: " + STORE_HELP)
@click.option("--flows", "n_flows", type=click.IntRange(1, 200_000_000), default=1_500_000, show_default=True,
              help="Flow records for the quarter.")
@click.option("--previous/--no-previous", default=True, show_default=True,
              help="Also simulate the previous quarter (half as many records) for the QoQ change.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--rollups/--no-rollups", default=True, show_default=True,
              help="Write rollups beside each batch (what the report reads).")
@enrich_options
def simulate(quarter, out, n_flows, previous, seed, rollups, enrich_data, taxonomy, metros, asn_mmdb, debug):
    """Write a quarter of SIMULATED flows of a storage provider's edge into a store."""
    from ..flows.simulate import PREVIOUS_SHIFT
    from ..flows.simulate import simulate as sim

    q = _quarter(debug, quarter)
    from ..flows.rollup import Rollups

    e = _run(debug, _enricher, enrich_data, taxonomy, metros, asn_mmdb)
    store = open_store(out, debug, rollups=Rollups(e) if rollups else None)
    if previous:
        r = _run(debug, sim, q.prev(), store, e, max(n_flows // 2, 1), seed, 0.5, PREVIOUS_SHIFT)
        click.echo(f"{q.prev()}: {r.flows:,} simulated flows ({r.elephant_sessions} elephant sessions) "
                   f"in {r.seconds:.1f} s", err=True)
    r = _run(debug, sim, q, store, e, n_flows, seed)
    click.echo(f"{q}: {r.flows:,} simulated flows ({r.elephant_sessions} elephant sessions, "
               f"{r.unique_peers:,} peers) in {r.seconds:.1f} s -> {out}", err=True)
    if rollups:
        # the quarters are complete: one file per day and level, the monthly peer tables
        # and the quarters' elephant tables the report reads
        from ..flows import maintain, scan

        t0 = time.perf_counter()
        days = scan.raw_days(store, (q.prev() if previous else q).start, q.end)
        n = _run(debug, maintain.compact, store, days)
        click.echo(f"rollups compacted: {n['before']:,} -> {n['after']:,} files, "
                   f"{n['months']} monthly peer tables, {n['elephant_quarters']} elephant tables "
                   f"in {time.perf_counter() - t0:.1f} s", err=True)


def _thresholds(rate_on, rate_off, min_bytes, min_duration, interval):
    from ..flows.elephants import Thresholds

    return Thresholds(interval_s=interval, rate_on_bps=rate_on * 1e6, rate_off_bps=rate_off * 1e6,
                      min_bytes=min_bytes * 1e9, min_duration_s=min_duration)


def elephant_options(f):
    opts = [
        click.option("--rate-on", type=float, default=100.0, show_default=True,
                     help="Mb/s a flow must sustain to become an elephant."),
        click.option("--rate-off", type=float, default=50.0, show_default=True,
                     help="Mb/s below which an elephant ends (hysteresis)."),
        click.option("--min-size", "min_bytes", type=float, default=1.0, show_default=True,
                     help="GB an elephant episode must move."),
        click.option("--min-duration", type=float, default=120.0, show_default=True,
                     help="Seconds an elephant episode must last."),
        click.option("--interval", type=click.IntRange(1, 86400), default=60, show_default=True,
                     help="Seconds per rate interval."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@click.command()
@click.option("--store", "store_dir", required=True, type=StoreLocation(must_exist=True),
              metavar=STORE_METAVAR, help=STORE_HELP)
@click.option("--quarter", required=True, help="e.g. 2025Q4 (the previous quarter gives the change).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--sites", type=click.Path(dir_okay=False), default=None,
              help="TOML: [sites] exporter -> site, [regions] site -> region.")
@click.option("--home-country", default=None, metavar="CC",
              help="ISO country code of home (e.g. US): adds the countries-excluding-home view.")
@click.option("--top", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--source", type=click.Choice(["auto", "rollups", "raw"]), default="auto", show_default=True,
              help="Figures from the rollups (auto: when they cover the window, else raw flows).")
@click.option("--ray", "ray", default=None, metavar="ADDRESS|local",
              help="Scan raw flows over a Ray cluster's tasks (implies --source raw).")
@elephant_options
@enrich_options
def report(store_dir, quarter, out, sites, home_country, top, source, ray, rate_on, rate_off, min_bytes,
           min_duration, interval, enrich_data, taxonomy, metros, asn_mmdb, debug):
    """Write the network-stats report: report.html (offline), report.json, charts/*.png."""
    from ..flows.enrich.sites import load_regions, load_sites
    from ..flows.report import write_report

    t0 = time.perf_counter()
    q = _quarter(debug, quarter)
    th = _run(debug, _thresholds, rate_on, rate_off, min_bytes, min_duration, interval)
    e = _run(debug, _enricher, enrich_data, taxonomy, metros, asn_mmdb)
    site_map = _run(debug, load_sites, sites)
    region_map = _run(debug, load_regions, sites)
    store = open_store(store_dir, debug)
    r = _run(debug, write_report, store, q, e, out, thresholds=th, sites=site_map,
             regions=region_map, home_country=home_country, top_n=top,
             source="raw" if ray else source, ray=ray,
             enrich_args=_enrich_args(enrich_data, taxonomy, metros, asn_mmdb) if ray else None)
    warn_skipped(store)
    label = " SIMULATED" if r["simulated"] else ""
    src = r["source"]
    how = f"from {src['kind']}" + (f" ({src['reason']})" if src["reason"] and src["kind"] != "rollups" else "")
    el = src.get("elephants", {})
    if src["kind"] == "rollups" and el.get("kind") == "raw":  # say why the elephants scanned raw flows
        how += f", elephants from raw flows ({el['reason']})"
    click.echo(f"{q}{label}: {r['totals']['flows']:,} flows, {r['unique_endpoints']['all']:,} peers, "
               f"{r['elephants']['count']:,} elephants, {how}; report in {out}/report.html "
               f"({time.perf_counter() - t0:.1f} s)", err=True)


@click.command()
@click.option("--store", "store_dir", required=True, type=StoreLocation(must_exist=True),
              metavar=STORE_METAVAR, help=STORE_HELP)
@click.option("--quarter", default=None, help="Only the days of this quarter, e.g. 2025Q4 (default: every day).")
@click.option("--ray", "ray", default=None, metavar="ADDRESS|local",
              help="Compute the days' rollups in Ray tasks (the driver writes them).")
@click.option("--compact", is_flag=True,
              help="Only merge each day's rollup files into one per level (no raw flows read).")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@enrich_options
def rollup(store_dir, quarter, ray, compact, as_json, enrich_data, taxonomy, metros, asn_mmdb, debug):
    """Rebuild the rollups (5m, 1h, 1d, peers, mover) of a store from its raw flows: for
    stores written before rollups, or with another enrichment. One file per level and day.
    With --compact, merge the files many writer batches left instead, and derive each
    month's peer table (what the report reads for a whole month)."""
    from ..flows import maintain, scan

    t0 = time.perf_counter()
    store = open_store(store_dir, debug)
    if quarter:
        q = _quarter(debug, quarter)
        days = scan.raw_days(store, q.start, q.end)
    else:
        days = scan.raw_days(store)
    if compact:
        rows = _run(debug, maintain.compact, store, days)
    elif ray:
        from ..flows.scan_ray import backfill_on_ray

        rows = _run(debug, backfill_on_ray, store, days, ray,
                    _enrich_args(enrich_data, taxonomy, metros, asn_mmdb))
    else:
        e = _run(debug, _enricher, enrich_data, taxonomy, metros, asn_mmdb)
        rows = _run(debug, maintain.backfill, store, e, days)
    out = {"days": len(days), "rows": rows, "seconds": round(time.perf_counter() - t0, 3)}
    if as_json:
        click.echo(json.dumps(out, indent=1))
    else:
        what = "files" if compact else "rows"
        click.echo(f"rollups of {len(days)} day(s): " + ", ".join(f"{k} {v:,} {what}" for k, v in rows.items())
                   + f" ({out['seconds']:.1f} s)", err=True)


@click.command()
@click.option("--store", "store_dir", required=True, type=StoreLocation(must_exist=True),
              metavar=STORE_METAVAR, help=STORE_HELP)
@click.option("--quarter", default=None, help="Limit to a quarter, e.g. 2025Q4 (default: all flows).")
@click.option("--top", type=click.IntRange(1, 100000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the episodes as JSON.")
@elephant_options
@enrich_options
def elephants(store_dir, quarter, top, as_json, rate_on, rate_off, min_bytes, min_duration, interval,
              enrich_data, taxonomy, metros, asn_mmdb, debug):
    """List elephant flows (sustained, large transfers) in a store, largest first."""
    from datetime import UTC, datetime

    from ..flows.elephants import find
    from ..flows.report.charts import human_bits
    from ..flows.stats import prepare

    th = _run(debug, _thresholds, rate_on, rate_off, min_bytes, min_duration, interval)
    e = _run(debug, _enricher, enrich_data, taxonomy, metros, asn_mmdb)
    store = open_store(store_dir, debug)
    con = _run(debug, store.connect)
    warn_skipped(store)
    if quarter:
        q = _quarter(debug, quarter)
        start, end = q.start, q.end
    else:
        start, end = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
    _run(debug, prepare, con, e, start, end)
    eps = _run(debug, find, con, th, "true", top)
    if as_json:
        click.echo(json.dumps(eps, indent=2, default=str))
        return
    if not eps:
        click.echo("no elephant flows", err=True)
        return
    for x in eps:
        when = datetime.fromtimestamp(x["start"], UTC).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{when}  {x['src_addr']}:{x['src_port']} -> {x['dst_addr']}:{x['dst_port']}  "
                   f"{x['duration_s'] // 60:>4} min  {human_bits(x['bytes'] * 8):>9}  "
                   f"avg {human_bits(x['avg_bps'])}/s  {x['category']}  {x['org'] or ''}  {x['metro']}")


def register(group: click.Group) -> None:
    """Attach these commands to the ``flows`` group."""
    for command in (classify, simulate, report, rollup, elephants):
        group.add_command(command)
