"""The sans-I/O parts of sync: walk order equals S3 key order, the merge-join, filters and
the per-direction change rules."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkline.engine import listing as listing_mod
from trunkline.engine.sync import Entry, Filters, decide, join
from trunkline.storage.local import walk
from trunkline.storage.partial import partial_name
from trunkline.url import Location


def _e(rel: str, size: int = 1, mtime: float | None = 100.0, etag: str | None = None) -> Entry:
    return Entry(rel, size, mtime, etag, None)


def test_walk_yields_s3_key_order(tmp_path):
    names = ["a-b", "a/x", "a/b/c", "a.txt", "a0", "b", "Z", "é", "a/b-", "ab/c", "a b"]
    for n in names:
        p = tmp_path / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    (tmp_path / partial_name("f")).write_bytes(b"partial")
    got = [f.rel for f in walk(str(tmp_path))]
    assert got == sorted(names, key=lambda s: s.encode())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text("ab-./_é0", min_size=1, max_size=8), min_size=1, max_size=12))
def test_walk_order_property(tmp_path_factory, names):
    root = tmp_path_factory.mktemp("w")
    made = set()
    for n in names:
        parts = [p for p in n.split("/") if p not in ("", ".", "..")]
        if not parts:
            continue
        rel = "/".join(parts)
        # a name cannot be both a file and a directory
        if any(rel.startswith(m + "/") or m.startswith(rel + "/") or m == rel for m in made):
            continue
        p = root.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
        made.add(rel)
    got = [f.rel for f in walk(str(root))]
    assert got == sorted(made, key=lambda s: s.encode())


LOCAL, STORE = Location(None, path="/tmp/x"), Location("s3", "bk", "p")


def _triples(out) -> list[tuple[str, str | None, str | None]]:
    return sorted((r, s and s.rel, d and d.rel) for r, s, d in out)


def _reference(src_keys, dst_keys) -> list[tuple[str, str | None, str | None]]:
    """The full outer join by sets: what any order of either listing must give."""
    return sorted((k, k if k in src_keys else None, k if k in dst_keys else None)
                  for k in set(src_keys) | set(dst_keys))


def test_join_full_outer_any_order():
    # two stores: the destination in SeaweedFS's tree order ('b/x' before 'b-y'), the
    # source in bytes; pairs as the merge meets them, what waited last
    src = [_e("a"), _e("b-y"), _e("b/x"), _e("d")]
    dst = [_e("b/x"), _e("b-y"), _e("e"), _e("c")]
    out = [(r, s is not None, d is not None)
           for r, s, d in join(src, STORE, dst, src_loc=STORE)]
    assert sorted(out) == [("a", True, False), ("b-y", True, True), ("b/x", True, True),
                           ("c", False, True), ("d", True, False), ("e", False, True)]
    assert {out.index(("b-y", True, True)), out.index(("b/x", True, True))} == {0, 1}


def test_join_merges_a_local_destination_with_a_source_in_tree_order():
    # the local walk in key order, the source in SeaweedFS's tree order: 'b/x' comes
    # before 'b-y', so 'b-y' is asked for after the merge went past it
    src = [_e("a"), _e("b/x"), _e("b/z"), _e("b-y"), _e("d")]
    dst = [_e("b-w"), _e("b-y"), _e("b/x"), _e("c"), _e("e")]
    out = [(r, s is not None, d is not None)
           for r, s, d in join(src, LOCAL, dst, src_loc=STORE)]
    assert out == [("a", True, False), ("b/x", True, True), ("b/z", True, False),
                   ("b-y", True, True), ("d", True, False),
                   ("b-w", False, True), ("c", False, True), ("e", False, True)]


def _tree_order(keys: list[str]) -> list[str]:
    """SeaweedFS's listing order: each directory's files, then its subdirectories."""
    return sorted(keys, key=lambda k: [(1, p) for p in k.split("/")[:-1]] + [(0, k)])


def _key_order(keys) -> list[str]:
    """S3's (and the local walk's) order: UTF-8 bytes, a non-UTF-8 name's own bytes."""
    return sorted(keys, key=lambda k: k.encode("utf-8", "surrogateescape"))


def _listed(keys, order: str, seed: int = 0) -> list[str]:
    """``keys`` in the order a store might list them."""
    keys = sorted(keys)
    if order == "shuffled":
        random.Random(seed).shuffle(keys)
        return keys
    return {"bytes": _key_order(keys), "tree": _tree_order(keys), "reversed": keys[::-1]}[order]


NAMES = st.sets(st.text("ab-/é\udcff", min_size=1, max_size=6))
ORDERS = st.sampled_from(["bytes", "tree", "reversed", "shuffled"])


@settings(max_examples=300, deadline=None)
@given(NAMES, NAMES, ORDERS, ORDERS, st.sampled_from(["store-store", "download", "upload"]),
       st.integers(0, 1000))
def test_the_join_is_the_full_outer_join_in_any_order(src_keys, dst_keys, src_order,
                                                      dst_order, kind, seed):
    """Against the join by sets, for every listing order a store may have: two stores,
    a download (the local side in key order), an upload (likewise)."""
    src_loc, dst_loc = {"store-store": (STORE, STORE), "download": (STORE, LOCAL),
                        "upload": (LOCAL, STORE)}[kind]
    src = _key_order(src_keys) if src_loc is LOCAL else _listed(src_keys, src_order, seed)
    dst = _key_order(dst_keys) if dst_loc is LOCAL else _listed(dst_keys, dst_order, seed + 1)
    out = list(join([_e(k) for k in src], dst_loc, [_e(k) for k in dst], src_loc=src_loc))
    assert _triples(out) == _reference(src_keys, dst_keys)
    assert len(out) == len(set(src_keys) | set(dst_keys))          # each name once
    if kind == "download":   # the source's names as it listed them, then the folder's own
        assert [r for r, s, _ in out[:len(src)]] == src
    if kind == "upload":     # likewise the store's, then the local source's own
        assert [r for r, _, d in out if d is not None] == dst


@pytest.mark.parametrize("order", ["bytes", "tree"])
def test_two_stores_in_one_order_join_without_an_index(monkeypatch, order):
    """An unchanged sync between stores that list alike is a plain merge: nothing is
    written to the on-disk index (it used to hold the whole destination listing)."""
    made = []
    real = listing_mod._Index

    def counting(*a, **kw):
        made.append(1)
        return real(*a, **kw)
    monkeypatch.setattr(listing_mod, "_Index", counting)
    keys = _listed({f"d{i % 7}/{'-' * (i % 3)}k{i}" for i in range(500)}, order)
    out = list(join([_e(k) for k in keys], STORE, [_e(k) for k in keys], src_loc=STORE))
    assert [r for r, s, d in out if s and d] == keys and made == []
    # one side in another order: what they disagree on waits in the index, still exact
    out = list(join([_e(k) for k in _listed(keys, "reversed")], STORE, [_e(k) for k in keys],
                    src_loc=STORE))
    assert _triples(out) == _reference(keys, keys) and made


def test_a_local_destination_out_of_key_order_is_refused():
    with pytest.raises(RuntimeError, match="not in key order"):
        list(join([_e("a")], LOCAL, [_e("b"), _e("a")], src_loc=STORE))


def test_join_rebuilds_what_jobs_need():
    loc = Location("s3", "bk", "pre")
    # a store's entry that waited in the index
    [_, (rel, s, d)] = list(join([_e("z")], loc, [_e("k/1", 7, 5.0, '"e"')], src_loc=loc))
    assert s is None and d.info.key == "pre/k/1" and d.info.size == 7 and d.etag == '"e"'
    # a local destination's entry that the merge passed went through the index
    [_, (rel, s, d)] = list(join([_e("z")], Location(None, path="/r"), [_e("k/1", 7, 5.0)],
                                 src_loc=loc))
    assert d.info.path == "/r/k/1" and d.info.mtime == 5.0
    # and a local source's, against a store
    [_, (rel, s, d)] = list(join([_e("k/1", 7, 5.0)], loc, [_e("z")],
                                 src_loc=Location(None, path="/r")))
    assert d is None and s.info.path == "/r/k/1" and s.info.size == 7 and s.mtime == 5.0


def test_filters_rclone_order_first_match_wins():
    f = Filters([(False, "*.tmp"), (True, "*.bin"), (True, "/keep/**")])
    assert f.allows("x.bin") and f.allows("deep/dir/x.bin")
    assert not f.allows("x.tmp") and f.allows("a.tmp.bin")
    assert f.allows("keep/a/b.txt") and not f.allows("other/keep/a.txt")
    assert not f.allows("readme.txt")          # an include implies "exclude the rest"
    # order matters: with the include first, *.tmp under keep/ is kept
    g = Filters([(True, "/keep/**"), (False, "*.tmp")])
    assert g.allows("keep/x.tmp") and not g.allows("x.tmp")


def test_filters_globs():
    f = Filters([(False, "/logs/"), (False, "*.{jpg,png}"), (False, "x?[0-9]")])
    assert not f.allows("logs/a/b") and f.allows("a/logs")
    assert not f.allows("p/q.jpg") and not f.allows("q.png") and f.allows("q.gif")
    assert not f.allows("d/xa7") and f.allows("xab")
    assert Filters().allows("anything") and not Filters()
    assert not Filters([(False, "*")]).allows("a/b")           # unanchored: any depth
    assert not Filters([(False, "/*")]).allows("top") and Filters([(False, "/*")]).allows("a/b")
    with pytest.raises(ValueError):
        Filters([(True, "{a,b")])


def test_decide_rules():
    # upload: only a newer local file (LastModified has whole seconds)
    assert decide("upload", _e("k", 5, 100.7), _e("k", 5, 100.0)) is None
    assert decide("upload", _e("k", 5, 101.2), _e("k", 5, 100.0)) == "newer"
    assert decide("upload", _e("k", 5, 90.0), _e("k", 5, 100.0)) is None
    # a store 30 s ahead: an edit 5 s after the upload reads 25 s before LastModified
    assert decide("upload", _e("k", 5, 75.0), _e("k", 5, 100.0)) is None
    assert decide("upload", _e("k", 5, 75.0), _e("k", 5, 100.0), shift=30.5) == "newer"
    assert decide("upload", _e("k", 5, 60.0), _e("k", 5, 100.0), shift=30.5) is None
    assert decide("s3", _e("k", 5, 95.0, '"aa"'), _e("k", 5, 100.0, '"bb"'), shift=10) == "newer"
    assert decide("upload", _e("k", 6, 90.0), _e("k", 5, 100.0)) == "size"
    # download: the file keeps the object's time; any difference > 1 s means changed
    assert decide("download", _e("k", 5, 100.0), _e("k", 5, 100.9)) is None
    assert decide("download", _e("k", 5, 100.0), _e("k", 5, 90.0)) == "mtime"
    assert decide("download", _e("k", 5, 100.0), _e("k", 5, 120.0)) == "mtime"
    # s3 -> s3: equal ETags are unchanged; else copy when the source is newer
    assert decide("s3", _e("k", 5, 200.0, '"aa"'), _e("k", 5, 100.0, '"aa"')) is None
    assert decide("s3", _e("k", 5, 200.0, '"aa"'), _e("k", 5, 100.0, '"bb"')) == "newer"
    assert decide("s3", _e("k", 5, 100.0, '"aa"'), _e("k", 5, 200.0, '"bb"')) is None
    assert decide("upload", _e("k", 5, None), _e("k", 5, 100.0)) is None


def test_walk_never_follows_a_folder_swapped_for_a_symlink(tmp_path):
    """An upload's source may be shared: a folder listed as a real one and replaced by a
    symlink before the walk enters it is skipped, not followed out of the tree. A symlink
    to a file is the file it names; a symlinked folder is never walked into."""
    root, outside = tmp_path / "src", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_bytes(b"f")
    (root / "a.txt").write_bytes(b"a")
    (root / "linked.txt").symlink_to(root / "a.txt")
    (root / "z").mkdir()
    (root / "z" / "g").write_bytes(b"g")
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (root / "linkdir").symlink_to(outside)
    w = walk(str(root))
    assert next(w).rel == "a.txt"           # the root has been read: sub/ is a folder
    os.rename(root / "sub", tmp_path / "moved")
    (root / "sub").symlink_to(outside)
    rest = [f.rel for f in w]
    assert rest == ["linked.txt", "z/g"]
    assert not any("secret" in r for r in rest)


def test_walk_missing_root_is_a_location_error(tmp_path):
    from trunkline.url import LocationError

    with pytest.raises(LocationError):
        list(walk(os.path.join(tmp_path, "nope")))
