"""The tuning benchmark (issue 4): auto-tuned ``trunkline cp`` vs a static sweep vs peers.

    .venv/bin/python bench/tuning.py                 # 8 x 128 MiB, 3 rounds, both scenarios
    .venv/bin/python bench/tuning.py --quick         # 4 x 32 MiB, 3 rounds
    .venv/bin/python bench/tuning.py --scenarios wan --rounds 5
    .venv/bin/python bench/tuning.py --dataset 1x2G --scenarios wan --wan-rtt 100ms

Method. One embedded SeaweedFS on loopback holds the dataset (random bytes, seeded once
with ``trunkline cp``). Every run is a download of the whole prefix into an emptied local
folder. Scenario ``wan``: the tools talk to a ``trunkline.testing.Proxy`` (its own
process) in front of SeaweedFS that delays each direction by 20 ms (RTT 40 ms), lets at
most 4 MiB be in flight per connection and direction (a window: one connection carries at
most window/RTT = 105 MB/s) and caps the aggregate at 4 Gbit/s. Scenario ``direct``: no
proxy. Configurations per round, in rotating order: trunkline auto (its defaults), static
``--no-tune --connections C --part-size P`` for C in 1,4,16,32 and P in 8M,32M, s5cmd and
rclone with their defaults. A run counts when it exits 0 and every file has its size and
the sha256 of one sampled file matches. Goodput = dataset bytes x 8 / child wall seconds
(process start to reap, so each tool pays its own start-up). Medians over the rounds.
Before each run the destination is emptied, ``sync`` runs, and as many bytes of memory as
the set holds are touched and freed (``common.prefault``: this VM's balloon makes a page's
first touch cost ~2.7 s of system time per GB, billed to whichever tool gets it). The
CPU seconds of the tool, of SeaweedFS and of the proxy are recorded per run.

Caveat: the proxy is Python; on a small machine its CPU competes with the tools, so the
emulated cap may not be reachable by anyone — the table states the best figure reached.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from common import (
    Dataset,
    fmt,
    generate_dataset,
    local_listing,
    machine_info,
    md_table,
    median,
    prefault,
    run_measured,
    sha256_file,
    venv_bin,
)

HERE = Path(__file__).resolve().parent
MiB = 2**20
DELAY_S = 0.020
WINDOW = 4 * MiB
CAP_BPS = 4e9
STATIC = [(c, p) for c in (1, 4, 16, 32) for p in ("8M", "32M")]


# --------------------------------------------------------------------------- proxy process


def serve_proxy(upstream_port: int, delay: float, window: int, rate: float) -> None:
    """Child mode: run a Proxy until stdin closes; print its port first."""
    from trunkline.testing import Proxy

    with Proxy(("127.0.0.1", upstream_port), delay_s=delay, window_bytes=window,
               rate_bps=rate) as px:
        print(px.port, flush=True)
        sys.stdin.read()


class ProxyProcess:
    """The WAN emulator in a process of its own, so its threads do not share our GIL."""

    def __init__(self, upstream_port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-proxy", str(upstream_port),
             "--wan-rtt", f"{2 * DELAY_S * 1e3:g}ms", "--wan-window", str(WINDOW)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.endpoint_url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# --------------------------------------------------------------------------- runs


def proc_cpu_s(pid: int) -> float:
    """user + system CPU seconds of a running process (the server, the proxy)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tool_env(url: str, access: str, secret: str, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    empty = work / "empty.conf"
    empty.touch()
    env.update({
        "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(empty), "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "TRUNKLINE_CONFIG": "/nonexistent/trunkline.toml",
        "TRUNKLINE_STATE_DIR": str(work / "state"),
        "RCLONE_CONFIG": str(empty), "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "SeaweedFS", "RCLONE_CONFIG_BENCH_ENDPOINT": url,
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": access,
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": secret,
        "RCLONE_CONFIG_BENCH_REGION": "us-east-1", "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
    })
    return env


def argv_for(config: str, url: str, dst: Path, bins: dict[str, str]) -> list[str]:
    src = "s3://tune/ds/"
    if config.startswith("auto"):   # auto, or auto:EXTRA ARGS (e.g. auto:--max-connections 32)
        extra = config.split(":", 1)[1].split() if ":" in config else []
        return [bins["trunkline"], "cp", "-r", "--json", "--no-resume", *extra, src, f"{dst}/"]
    if config.startswith("static"):
        _, c, p = config.split(":")
        return [bins["trunkline"], "cp", "-r", "--json", "--no-resume", "--no-tune",
                "--connections", c, "--part-size", p, src, f"{dst}/"]
    if config == "s5cmd":
        return [bins["s5cmd"], "--endpoint-url", url, "cp", "s3://tune/ds/*", f"{dst}/"]
    if config == "rclone":
        return [bins["rclone"], "copy", "bench:tune/ds", str(dst)]
    raise ValueError(config)


def label(config: str) -> str:
    if config.startswith("static"):
        _, c, p = config.split(":")
        return f"static C={c} P={p}"
    if config.startswith("auto:"):
        return f"trunkline auto {config.split(':', 1)[1]}"
    return {"auto": "trunkline auto", "s5cmd": "s5cmd defaults",
            "rclone": "rclone defaults"}[config]


def one_run(config: str, scenario: str, url: str, env: dict, gen, work: Path,
            bins: dict[str, str], rnd: int) -> dict:
    dst = work / "dst"
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir()
    subprocess.run(["sync"], check=False)
    prefault(gen.dataset.total_bytes + (64 << 20))  # see common.prefault: the VM's balloon
    tag = f"{scenario}-{config.replace(':', '_')}-{rnd}"
    m = run_measured(argv_for(config, url, dst, bins), env=env, log_dir=work / "logs",
                     tag=tag, timeout=600)
    row = {"scenario": scenario, "config": config, "round": rnd, "exit": m.exit_code,
           "wall_s": m.wall_s, "cpu_s": m.cpu_s, "maxrss_mib": m.maxrss_mib}
    err = None
    if m.exit_code != 0:
        err = m.last_err_line
    else:
        found, paths = local_listing(dst)
        if found != gen.sizes:
            err = "listing differs"
        else:
            name = random.choice(sorted(gen.sizes))
            if sha256_file(paths[name]) != gen.sha256[name]:
                err = f"sha256 differs: {name}"
    row["error"] = err
    row["gbps"] = None if err else gen.dataset.total_bytes * 8 / m.wall_s / 1e9
    if config.startswith(("auto", "static")) and not err:
        try:
            j = json.loads((work / "logs" / f"{tag}.out").read_text())
            row["engine_gbps"] = j.get("gbps")
            row["decisions"] = [(round(d.get("at", 0), 2), d.get("connections"),
                                 (d.get("part_size") or 0) >> 20, d.get("reason"))
                                for d in j.get("decisions", [])]
        except (OSError, ValueError):
            pass
    shutil.rmtree(dst, ignore_errors=True)
    return row


def run_probe(trunkline: str, env: dict, work: Path, scenario: str) -> dict:
    """`trunkline probe --json` against the scenario's endpoint (measured like a run)."""
    m = run_measured([trunkline, "probe", "s3://tune/ds/", "--json", "--duration", "8"],
                     env=env, log_dir=work / "logs", tag=f"probe-{scenario}", timeout=120)
    try:
        d = json.loads((work / "logs" / f"probe-{scenario}.out").read_text())
    except (OSError, ValueError):
        return {"summary": f"probe failed: {m.last_err_line}"}
    d["summary"] = (
        f"RTT {d['rtt_s'] * 1e3:.1f} ms, TTFB GET {d['ttfb_get_s'] * 1e3:.1f} ms, "
        f"1 connection {d['one_stream'] * 8 / 1e9:.3f} Gbit/s, sweep "
        + " ".join(f"{n}:{b * 8 / 1e9:.2f}" for n, b in d["sweep"])
        + f" Gbit/s, saturates at {d['saturating_streams']}, recommends "
        f"-c {d['recommended_connections']} --part-size {d['recommended_part_size'] >> 20}M, "
        f"ceiling {d['expected_ceiling'] * 8 / 1e9:.2f} Gbit/s ({m.wall_s:.1f} s)")
    return d


# --------------------------------------------------------------------------- report


def summarize(rows: list[dict], scenario: str, configs: list[str]) -> tuple[str, dict]:
    med: dict[str, float | None] = {}
    table = []
    for c in configs:
        rs = [r for r in rows if r["scenario"] == scenario and r["config"] == c]
        good = [r["gbps"] for r in rs if r["gbps"]]
        med[c] = median(good)
        fails = [r["error"] for r in rs if r["error"]]
        table.append([label(c), fmt(med[c]), f"{len(good)}/{len(rs)}",
                      fmt(median([r["cpu_s"] for r in rs])),
                      fmt(median([r.get("server_cpu_s") or 0 for r in rs])),
                      fmt(median([r.get("proxy_cpu_s") or 0 for r in rs])),
                      (fails[0][:60] if fails else "")])
    statics = {c: v for c, v in med.items() if c.startswith("static") and v}
    best = max(statics, key=lambda c: statics[c]) if statics else None
    auto = med.get("auto")

    def ratio(a, b):
        return a / b if a and b else None

    facts = {
        "best_static": label(best) if best else None,
        "auto_over_best_static": ratio(auto, statics.get(best) if best else None),
        "auto_over_s5cmd": ratio(auto, med.get("s5cmd")),
        "auto_over_rclone": ratio(auto, med.get("rclone")),
        "medians_gbps": med,
    }
    if scenario == "wan":
        facts["auto_over_cap"] = ratio(auto, CAP_BPS / 1e9)
        one = [v for c, v in statics.items() if c.startswith("static:1:")]
        if one:
            from trunkline import physics

            pred = physics.window_ceiling(WINDOW, 2 * DELAY_S) * 8 / 1e9
            facts["plan_per_connection_gbps"] = pred
            facts["measured_one_connection_gbps"] = max(one)
            facts["plan_over_measured"] = pred / max(one)
    md = md_table(["configuration", "goodput Gbit/s (median)", "good runs", "CPU s",
                   "server CPU s", "proxy CPU s", "failure"],
                  table)
    return md, facts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 x 32 MiB instead of 8 x 128 MiB")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dataset", default=None, help="COUNTxSIZE, e.g. 8x512M (default 8x128M)")
    ap.add_argument("--scenarios", default="wan,direct")
    ap.add_argument("--configs", default=None, help="comma list: auto,static:C:P,s5cmd,rclone")
    ap.add_argument("--no-probe", action="store_true", help="skip `trunkline probe`")
    ap.add_argument("--wan-rtt", default="40ms", help="emulated RTT of scenario wan")
    ap.add_argument("--wan-window", default="4M", help="emulated window per connection")
    ap.add_argument("--serve-proxy", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    global DELAY_S, WINDOW
    from trunkline.physics import parse_duration, parse_size

    DELAY_S = parse_duration(a.wan_rtt) / 2
    WINDOW = parse_size(a.wan_window)
    if a.serve_proxy is not None:
        serve_proxy(a.serve_proxy, DELAY_S, WINDOW, CAP_BPS)
        return 0
    bins = {t: venv_bin(t) or "" for t in ("trunkline", "s5cmd", "rclone")}
    configs = a.configs.split(",") if a.configs else (
        ["auto"] + [f"static:{c}:{p}" for c, p in STATIC] + ["s5cmd", "rclone"])
    configs = [c for c in configs if bins[c if c in ("s5cmd", "rclone") else "trunkline"]]
    if a.dataset:
        n, size = a.dataset.lower().split("x")
        ds = Dataset(f"d{a.dataset}", int(n), parse_size(size))
    else:
        ds = Dataset("q4x32M", 4, 32 * MiB) if a.quick else Dataset("d8x128M", 8, 128 * MiB)
    scenarios = a.scenarios.split(",")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    from trunkline.embedded_s3 import EmbeddedS3

    work = Path(tempfile.mkdtemp(prefix="tl-tuning-"))
    srv = EmbeddedS3(data_dir=work / "weed", buckets=("tune",)).start()
    rows: list[dict] = []
    probes: dict[str, dict] = {}
    px = None
    try:
        gen = generate_dataset(ds, work / "src")
        direct_env = tool_env(srv.endpoint_url, srv.access_key, srv.secret_key, work)
        seed = subprocess.run([bins["trunkline"], "cp", "-r", "-q", f"{gen.root}/",
                               "s3://tune/ds/"], env=direct_env, capture_output=True, text=True)
        if seed.returncode != 0:
            print("seeding failed:", seed.stderr, file=sys.stderr)
            return 1
        shutil.rmtree(gen.root)
        for scenario in scenarios:
            url = srv.endpoint_url
            if scenario == "wan":
                px = ProxyProcess(srv.port)
                url = px.endpoint_url
            env = tool_env(url, srv.access_key, srv.secret_key, work)
            watched = {"server": srv.proc.pid}
            if px is not None:
                watched["proxy"] = px.proc.pid
            if bins["trunkline"] and not a.no_probe:
                probes[scenario] = run_probe(bins["trunkline"], env, work, scenario)
                print(f"[{scenario}] probe: {probes[scenario].get('summary')}", flush=True)
            for rnd in range(a.rounds):
                order = configs[rnd % len(configs):] + configs[:rnd % len(configs)]
                for c in order:
                    before = {k: proc_cpu_s(pid) for k, pid in watched.items()}
                    r = one_run(c, scenario, url, env, gen, work, bins, rnd)
                    for k, pid in watched.items():
                        r[f"{k}_cpu_s"] = proc_cpu_s(pid) - before[k]
                    rows.append(r)
                    print(f"[{scenario} r{rnd}] {label(c):22s} "
                          f"{fmt(r['gbps'])} Gbit/s {r['error'] or ''}", flush=True)
            if px is not None:
                px.close()
                px = None
    finally:
        if px is not None:
            px.close()
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = {"dataset": ds.describe(), "machine": machine_info(), "rows": rows, "scenarios": {},
           "wan": {"rtt_s": 2 * DELAY_S, "window_bytes": WINDOW, "cap_bps": CAP_BPS}}
    text = [f"# tuning benchmark {stamp}: download of {ds.describe()}, "
            f"{a.rounds} rounds; wan = RTT {2 * DELAY_S * 1e3:g} ms, window "
            f"{WINDOW >> 20} MiB, cap {CAP_BPS / 1e9:g} Gbit/s", ""]
    out["probes"] = probes
    for s in scenarios:
        md, facts = summarize(rows, s, configs)
        if s in probes:
            facts["probe"] = probes[s].get("summary")
            one = probes[s].get("one_stream")
            if s == "wan" and one:
                from trunkline import physics

                pred = physics.window_ceiling(WINDOW, 2 * DELAY_S)
                facts["plan_over_probe_one_connection"] = pred / one
        out["scenarios"][s] = facts
        autos = [r.get("decisions") for r in rows if r["scenario"] == s and r["config"] == "auto"]
        text += [f"## {s}", "", md, "", "```", json.dumps(facts, indent=1, default=str),
                 f"tuner decisions (first auto run): {autos[0] if autos else None}", "```", ""]
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / f"tuning-{stamp}.json").write_text(json.dumps(out, indent=1, default=str))
    (HERE / "out" / f"tuning-{stamp}.md").write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
