"""physics.py and `trunkline plan`: worked examples checked by hand in the comments."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from trunkline import physics as ph
from trunkline.cli.main import cli


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2PB", 2 * 10**15),  # decimal: PB = 1000^5
        ("64M", 64 * 2**20),  # bare letter: binary, as rclone/dd
        ("64MiB", 64 * 2**20),
        ("1.5 GB", 1_500_000_000),
        ("1KB", 1000),
        ("4k", 4096),
        ("100", 100),
        ("7 bytes", 7),
        (123, 123),
    ],
)
def test_parse_size(text, expected):
    assert ph.parse_size(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("100G", 100e9),  # network rates are decimal bits/s
        ("100Gbps", 100e9),
        ("10Gbit/s", 10e9),
        ("2.5 Mb/s", 2.5e6),
        ("1.25GB/s", 10e9),  # capital B = bytes: 1.25e9 * 8
        ("1.25GBps", 10e9),
        ("1e9", 1e9),
    ],
)
def test_parse_rate(text, expected):
    assert ph.parse_rate_bps(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text,expected",
    [("30ms", 0.030), ("250us", 250e-6), ("1.5s", 1.5), ("2h", 7200.0), ("0", 0.0)],
)
def test_parse_duration(text, expected):
    assert ph.parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["30", "fast", "ms", "-3ms"])
def test_parse_duration_requires_unit(bad):
    with pytest.raises(ValueError):
        ph.parse_duration(bad)


def test_parse_loss():
    assert ph.parse_loss("1e-6") == 1e-6
    assert ph.parse_loss("0.01%") == pytest.approx(1e-4)
    with pytest.raises(ValueError):
        ph.parse_loss("1.5")


@pytest.mark.parametrize("bad", ["", "2XB", "many"])
def test_parse_size_rejects(bad):
    with pytest.raises(ValueError):
        ph.parse_size(bad)


def test_worked_example_100g_30ms_1e6():
    # 2 PB over 100 Gbit/s, 30 ms RTT, loss 1e-6, 64 MiB window, MSS 1448:
    p = ph.plan(2 * 10**15, 100e9, 0.030, 1e-6, 64 * 2**20, 1448, 8 * 2**20)
    # BDP = 100e9/8 * 0.030 = 375,000,000 bytes
    assert p.bdp_bytes == pytest.approx(375e6)
    # window/RTT = 67,108,864 / 0.030 = 2,236,962,133 B/s (17.9 Gbit/s)
    assert p.window_ceiling == pytest.approx(2_236_962_133, rel=1e-9)
    # Mathis = 1448/0.030 * sqrt(1.5)/sqrt(1e-6) = 48,266.67 * 1224.745 = 59,114,000 B/s
    assert p.mathis_ceiling == pytest.approx(59_114_000, rel=1e-4)
    assert p.limited_by == "loss"
    # payload = 12.5e9 * 1448/1538 = 11,768,530,559 B/s; / 59,114,000 = 199.08 -> 200
    assert p.link_goodput == pytest.approx(11_768_530_559, rel=1e-9)
    assert p.streams_needed == 200
    # memory = 200 * (64 + 8) MiB = 14,400 MiB
    assert p.memory_needed == 200 * 72 * 2**20
    # time = 2e15 / 11.7685e9 = 169,945 s (1 d 23 h 12 m)
    assert p.time_s == pytest.approx(169_945, rel=1e-4)
    # one stream: 2e15 / 59.114e6 = 33,832,919 s (391 days)
    assert p.one_stream_time_s == pytest.approx(33_832_900, rel=1e-4)


def test_worked_example_window_limited():
    # 4 MiB window at 40 ms: 4,194,304 / 0.04 = 104,857,600 B/s (838.9 Mbit/s)
    p = ph.plan(10**12, 10e9, 0.040, 0.0, 4 * 2**20)
    assert p.window_ceiling == pytest.approx(104_857_600)
    assert math.isinf(p.mathis_ceiling)
    assert p.limited_by == "window"
    # payload 1.25e9 * 0.94148 = 1,176,853,056 B/s; / 104,857,600 = 11.22 -> 12 streams
    assert p.streams_needed == 12


def test_link_limited_needs_one_stream():
    # 1 Gbit/s at 1 ms with a 64 MiB window: window/RTT = 67 GB/s >> link
    p = ph.plan(10**9, 1e9, 0.001, 0.0, 64 * 2**20)
    assert p.limited_by == "link"
    assert p.streams_needed == 1
    assert p.time_s == pytest.approx(1e9 / (1e9 / 8 * 1448 / 1538))


def test_mathis_scales_with_inverse_sqrt_loss():
    a = ph.mathis_ceiling(1448, 0.05, 1e-4)
    b = ph.mathis_ceiling(1448, 0.05, 1e-6)
    assert b / a == pytest.approx(10.0)  # 100x less loss -> 10x more rate


def test_cli_plan_human_and_json():
    r = CliRunner().invoke(
        cli, ["plan", "--size", "2PB", "--link", "100G", "--rtt", "30ms", "--loss", "1e-6",
              "--window", "64M"])
    assert r.exit_code == 0, r.output
    assert "streams needed" in r.output and "200" in r.output
    assert "loss" in r.output
    r = CliRunner().invoke(
        cli, ["plan", "--size", "1TB", "--link", "10G", "--rtt", "40ms", "--window", "4MiB",
              "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["streams_needed"] == 12 and d["limited_by"] == "window"
    assert d["mathis_ceiling"] is None  # infinite -> null in JSON


def test_cli_plan_usage_error():
    r = CliRunner().invoke(cli, ["plan", "--size", "2PB", "--link", "100G", "--rtt", "30"])
    assert r.exit_code == 2
    assert "duration" in r.output
