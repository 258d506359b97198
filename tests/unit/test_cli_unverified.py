"""Unverified objects on stderr: named up to a bound per reason, the rest counted."""

from __future__ import annotations

from trunkline.cli.mover import UNVERIFIED_SHOWN, echo_unverified
from trunkline.results import Unverified


def test_grouped_by_reason_first_few_named_rest_counted(capsys):
    items = [Unverified(f"s3://b/k{i}", "no checksum kept") for i in range(25)]
    items += [Unverified("s3://b/odd\x1b[2J", "etag is multipart")]
    echo_unverified(items)
    err = capsys.readouterr().err.splitlines()
    named = [line for line in err if "no checksum kept" in line and "more" not in line]
    assert named == [f"trunkline: unverified: s3://b/k{i}: no checksum kept"
                     for i in range(UNVERIFIED_SHOWN)]
    assert f"trunkline: unverified: ... and {25 - UNVERIFIED_SHOWN} more: no checksum kept " \
           "(--json lists every one)" in err
    (odd,) = [line for line in err if "multipart" in line]
    assert "\x1b" not in odd                      # names are made safe for the terminal
    assert len(err) == UNVERIFIED_SHOWN + 2


def test_few_are_all_named(capsys):
    echo_unverified([Unverified("a", "r"), Unverified("b", "r")])
    assert capsys.readouterr().err.splitlines() == ["trunkline: unverified: a: r",
                                                    "trunkline: unverified: b: r"]
