"""How a raw scan cuts a window into passes (``scan.passes``): bounded records per pass,
every day once, in order, a day larger than the bound alone."""

from trunkline.flows.scan import passes


def test_passes_bound_records_and_keep_every_day_in_order():
    counts = {"d1": 3, "d2": 3, "d3": 10, "d4": 1, "d5": 1}
    days = ["d1", "d2", "d3", "d4", "d5", "d6"]
    got = passes(counts, days, 5)
    assert got == [["d1"], ["d2"], ["d3"], ["d4", "d5", "d6"]]
    assert [d for g in got for d in g] == days
    assert all(sum(counts.get(d, 0) for d in g) <= 5 or len(g) == 1 for g in got)


def test_passes_of_nothing():
    assert passes({}, [], 5) == []
    assert passes({}, ["a", "b"], 5) == [["a", "b"]]
