"""What every ``flows`` command that takes a store shares: the ``--store`` parameter (a
directory or ``s3://bucket/prefix``) and opening the store with one-line errors."""

from __future__ import annotations

import os

import click

from .exits import fail

STORE_METAVAR = "DIR|s3://BUCKET/PREFIX"
STORE_HELP = ("Flow store: a directory, or s3://BUCKET/PREFIX (endpoint and credentials as "
              "for cp: AWS_ENDPOINT_URL, AWS_* keys, profiles; NAME:BUCKET/PREFIX for a "
              "named endpoint).")


class StoreLocation(click.ParamType):
    """A store location; ``must_exist``: a local store must be an existing directory (an
    S3 prefix is checked when read: listing it is the check)."""

    name = "store"

    def __init__(self, must_exist: bool = False):
        self.must_exist = must_exist

    def convert(self, value, param, ctx):
        from ..url import LocationError, parse_location

        try:
            loc = parse_location(str(value))
        except LocationError as e:
            self.fail(str(e), param, ctx)
        if loc.is_local:
            if os.path.exists(loc.path) and not os.path.isdir(loc.path):
                self.fail(f"{loc.path!r} is a file, not a store directory", param, ctx)
            if self.must_exist and not os.path.isdir(loc.path):
                self.fail(f"directory {loc.path!r} does not exist", param, ctx)
        return str(value)


def open_store(location: str, debug: bool = False, **kw):
    """``FlowStore(location, **kw)``; a location that cannot be used exits 2, one line."""
    from ..errors import TrunklineError
    from ..flows.store import FlowStore

    try:
        return FlowStore(location, **kw)
    except ValueError as e:  # LocationError: an unknown named endpoint, a glob prefix
        fail(debug, 2, e)
    except TrunklineError as e:
        fail(debug, 1, e)


def warn_skipped(store) -> None:
    """One line on stderr when the store held keys that were not read (hostile listing)."""
    if store.skipped:
        n = sum(store.skipped.values())
        click.echo(f"trunkline: warning: {n} key(s) in {store.location} skipped, not read "
                   f"({dict(sorted(store.skipped.items()))})", err=True)
