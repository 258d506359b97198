"""flows gc: retention per level of a flow store (local or S3); parse, plan, print."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from .flows_common import STORE_HELP, STORE_METAVAR, StoreLocation, fail, open_store


def _now(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected an ISO date or time "
                                 f"(2026-01-31, 2026-01-31T12:00Z)") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@click.command()
@click.option("--store", "store_dir", required=True, type=StoreLocation(must_exist=True),
              metavar=STORE_METAVAR, help=STORE_HELP)
@click.option("--keep", required=True, metavar="LEVEL=AGE,...",
              help="Window per level: raw (the flows), a rollup level (5m, 1h, 1d...) or "
                   "quarantine; AGE like 14d, 26w or forever. Levels not named are kept. "
                   "E.g. raw=14d,5m=180d,1h=forever,quarantine=30d.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option("--now", "now_text", default=None, metavar="ISO",
              help="Age relative to this UTC time instead of the clock (a replay of old data).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--debug", is_flag=True)
def gc(store_dir, keep, dry_run, now_text, as_json, debug):
    """Delete day partitions older than each level's window (relative to now, UTC)."""
    from ..errors import TrunklineError
    from ..flows.retention import gc as run_gc
    from ..flows.retention import parse_keep

    try:
        rules = parse_keep(keep)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--keep") from None
    now = _now(now_text)
    store = open_store(store_dir, debug)
    try:
        r = run_gc(store, rules, now=now, dry_run=dry_run)
    except ValueError as e:
        fail(debug, 2, e)
    except (OSError, TrunklineError) as e:
        fail(debug, 1, e)
    out = r.as_dict()
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    verb = "would delete" if dry_run else "deleted"
    for lv in out["levels"]:
        rule = lv["keep"] or "no rule: kept"
        click.echo(f"{lv['level']:>10} (keep {rule}): {verb} {lv['files_deleted']} files "
                   f"({lv['bytes_deleted']} bytes) in {lv['partitions_deleted']} day "
                   f"partitions; {lv['files_kept']} files kept"
                   + (f" from {lv['oldest_kept']}" if lv["oldest_kept"] else ""))
    if out["skipped_keys"]:
        click.echo(f"trunkline: warning: keys that are not flow files were left alone: "
                   f"{out['skipped_keys']}", err=True)


def register(group: click.Group) -> None:
    group.add_command(gc)
