"""The exception tree, the CLI's exit codes, and the one units module (pure, fast)."""

from __future__ import annotations

import pytest

from trunkline import errors, units
from trunkline.cli.mover import run_api


def test_every_failure_says_if_it_is_retryable():
    assert errors.NetworkError("x").retryable
    assert errors.ConnectionClosed("x").retryable and isinstance(errors.ConnectionClosed("x"),
                                                                 ConnectionError)
    assert errors.ReadTimeout("x").retryable and isinstance(errors.ReadTimeout("x"), TimeoutError)
    assert errors.ProtocolError("x").retryable
    assert errors.IntegrityError("x").retryable
    assert not errors.SourceChanged("x").retryable
    assert not errors.UsageError("x").retryable
    assert errors.StoreError(503, "SlowDown", "").retryable
    assert errors.StoreError(503, "SlowDown", "").slowdown
    assert not errors.StoreError(404, "NoSuchKey", "").retryable
    assert errors.is_retryable(ConnectionResetError())
    assert not errors.is_retryable(KeyError("a bug"))


def test_the_tree_has_one_root():
    for cls in (errors.UsageError, errors.ClusterUnavailable, errors.NetworkError,
                errors.ProtocolError, errors.IntegrityError, errors.SourceChanged,
                errors.StoreError):
        assert issubclass(cls, errors.TrunklineError)
    from trunkline.storage.s3 import S3Error
    from trunkline.url import LocationError

    assert S3Error is errors.StoreError
    assert issubclass(LocationError, errors.UsageError)


def _raise(exc):
    raise exc


@pytest.mark.parametrize("exc, code", [
    (errors.UsageError("bad option"), 2),
    (errors.StoreError(403, "AccessDenied", "no"), 1),
    (errors.SourceChanged("changed"), 1),
    (errors.IntegrityError("crc"), 1),
    (errors.ProtocolError("framing"), 1),
    (PermissionError("read-only filesystem"), 1),
])
def test_cli_maps_the_tree_to_exit_codes(exc, code, capsys):
    with pytest.raises(SystemExit) as e:
        run_api(False, _raise, exc)
    assert e.value.code == code
    assert capsys.readouterr().err.startswith("trunkline: error: ")


def test_cli_lets_a_bug_show_its_traceback():
    with pytest.raises(KeyError):   # not turned into "usage error" (exit 2) any more
        run_api(False, _raise, KeyError("internal"))
    with pytest.raises(ZeroDivisionError):
        run_api(False, _raise, ZeroDivisionError())


def test_one_duration_grammar():
    assert units.parse_duration("30ms") == pytest.approx(0.03)
    assert units.parse_duration("12h") == 43200
    assert units.parse_duration("2w") == 2 * 604800
    assert units.parse_duration("90", bare=1.0) == 90
    with pytest.raises(errors.UsageError):
        units.parse_duration("90")      # ambiguous without a unit
    with pytest.raises(ValueError):     # a UsageError is a ValueError for Python callers
        units.parse_duration("soon")


def test_sizes_rates_and_formatting():
    assert units.parse_size("64M") == 64 * units.MiB
    assert units.parse_size("1GB") == 10**9
    assert units.parse_transfer_rate("500M") == 500 * units.MiB
    assert units.parse_transfer_rate("4Gbit") == 4e9 / 8
    assert units.parse_transfer_rate(None) is None
    assert units.human_bytes(1.5 * units.GiB) == "1.5 GiB"
    assert units.human_bps(9.41e9) == "9.41 Gbit/s"


@pytest.mark.parametrize("parse,text", [
    (units.parse_size, "1e400"), (units.parse_size, "9EiB"), (units.parse_size, float("inf")),
    (units.parse_rate_bps, "1e30G"), (units.parse_rate_bps, float("nan")),
    (units.parse_duration, "1e300s"), (units.parse_duration, float("inf")),
    (units.parse_transfer_rate, "1e400"),
])
def test_figures_past_what_a_number_holds_are_usage_errors(parse, text):
    """``plan --size 1e400`` was an OverflowError traceback, ``--rtt 1e300s`` a blank
    line: a size past 2^63-1, a rate past 1 Ebit/s, a duration past 1e9 s, inf and nan are
    refused with the text named."""
    with pytest.raises(errors.UsageError, match="not a"):
        parse(text)


def _trunkline_modules():
    """Every module of the package (the C extension and the Ray-only modules included)."""
    import importlib
    import pkgutil

    import trunkline

    names = ["trunkline"] + [m.name for m in pkgutil.walk_packages(trunkline.__path__,
                                                                     "trunkline.")]
    mods = []
    for name in names:
        try:
            mods.append(importlib.import_module(name))
        except ImportError as e:   # an optional dependency (ray) missing: say which
            if getattr(e, "name", "") and not e.name.startswith("trunkline"):
                continue
            raise
    return mods


def test_every_exception_class_of_trunkline_is_in_the_one_tree():
    mods = _trunkline_modules()
    assert len(mods) > 100     # the walk really saw the package
    found = {}
    for m in mods:
        for obj in vars(m).values():
            if (isinstance(obj, type) and issubclass(obj, BaseException)
                    and obj.__module__.startswith("trunkline")):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    outside = sorted(n for n, c in found.items() if not issubclass(c, errors.TrunklineError))
    assert outside == []
    # the flow lens's classes are among them (the walk reached flows/), re-parented only
    for n in ("trunkline.flows.decode.counters.DecodeError",
              "trunkline.flows.sources.pcap.PcapError",
              "trunkline.flows.enrich.taxonomy.TaxonomyError",
              "trunkline.flows.decode.template.BudgetExceeded",
              "trunkline.storage.partial.UnsafeDestination", "trunkline.tools.ToolNotFound"):
        assert n in found


def test_flow_lens_errors_keep_their_names_attributes_and_old_bases():
    from trunkline.flows.decode.counters import DecodeError
    from trunkline.flows.enrich.taxonomy import TaxonomyError
    from trunkline.flows.sources.pcap import PcapError
    from trunkline.storage.partial import UnsafeDestination
    from trunkline.tools import ToolNotFound

    e = DecodeError("short_header", "12 bytes")
    assert e.reason == "short_header" and str(e) == "short_header: 12 bytes"
    assert isinstance(e, errors.DataError) and isinstance(e, ValueError) and not e.retryable
    assert isinstance(PcapError("x"), errors.DataError)
    assert isinstance(TaxonomyError("x"), errors.UsageError)
    assert isinstance(UnsafeDestination("x"), OSError) and not errors.is_retryable(
        UnsafeDestination("x"))
    assert isinstance(ToolNotFound("weed", []), RuntimeError)


@pytest.mark.parametrize("exc, code", [
    (errors.DataError("not a capture"), 1),
    (errors.UsageError("quarter must look like 2025Q4"), 2),
    (ValueError("quarter must look like 2025Q4"), 2),   # from the one call that says so
])
def test_flows_cli_maps_the_tree_to_exit_codes(exc, code, capsys):
    from trunkline.cli.exits import guarded

    with pytest.raises(SystemExit) as e:
        guarded(False, _raise, exc, usage=(ValueError,))
    assert e.value.code == code
    assert capsys.readouterr().err.startswith("trunkline: error: ")
    with pytest.raises(ValueError):   # without the call's say-so, a ValueError is a bug
        guarded(False, _raise, ValueError("internal"))
