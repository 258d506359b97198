"""TransferOptions: one frozen, validated value holding every mover default (pure, fast)."""

from __future__ import annotations

import dataclasses

import pytest

import trunkline
from trunkline.errors import UsageError
from trunkline.options import DEFAULTS, TransferOptions
from trunkline.units import MiB


def test_defaults_live_in_one_place():
    assert DEFAULTS.max_connections == 64
    assert DEFAULTS.initial_part_size == 16 * MiB and not DEFAULTS.part_size_fixed
    assert DEFAULTS.max_memory == 512 * MiB
    assert DEFAULTS.retries == 7 and DEFAULTS.read_timeout == 60
    assert DEFAULTS.tune and DEFAULTS.direct_io and DEFAULTS.resume and DEFAULTS.server_side


def test_frozen_and_normalised():
    o = TransferOptions(part_size="64MiB", bwlimit="4Gbit", bwlimit_endpoint={"s3": "500M"})
    assert o.part_size == 64 * MiB and o.part_size_fixed
    assert o.bwlimit == 4e9 / 8 and o.bwlimit_endpoint == {"s3": 500 * MiB}
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.part_size = 1  # type: ignore[misc]
    assert TransferOptions(max_memory="1M", part_size="8M").max_memory == 8 * MiB


def test_pinned_connections_bound_the_tuner():
    assert TransferOptions(connections=4).max_connections == 4
    assert TransferOptions(connections=4, max_connections=16).max_connections == 16
    assert TransferOptions(connections=32, max_connections=16).max_connections == 32


@pytest.mark.parametrize("bad", [
    dict(part_size="1MiB"), dict(connections=0), dict(max_connections=0), dict(retries=-1),
    dict(read_timeout=0), dict(part_size="lots"), dict(bwlimit="fast"),
    dict(part_size="1e100"), dict(part_size="5GiB1"), dict(part_size=5 * 2**30 + 1),
])
def test_wrong_values_are_usage_errors(bad):
    with pytest.raises(UsageError):
        TransferOptions(**bad)


def test_part_bounds_are_s3s():
    from trunkline import options
    from trunkline.storage import s3_limits

    assert (options.MIN_PART_SIZE, options.MAX_PART_SIZE) == (s3_limits.MIN_PART,
                                                              s3_limits.MAX_PART)
    assert TransferOptions(part_size="5GiB").part_size == s3_limits.MAX_PART


def test_build_takes_options_and_keyword_overrides():
    base = TransferOptions(connections=8)
    o = TransferOptions.build(base, part_size="32MiB", retries=None)
    assert (o.connections, o.part_size, o.retries) == (8, 32 * MiB, 7)
    assert TransferOptions.build(base) is base
    with pytest.raises(TypeError, match="unknown_knob"):
        TransferOptions.build(unknown_knob=1)


def test_the_package_exports_what_it_advertises():
    for name in trunkline.__all__:
        assert getattr(trunkline, name) is not None
    assert trunkline.TransferOptions is TransferOptions
