"""The sans-I/O parts of sync: walk order equals S3 key order, the merge-join, filters and
the per-direction change rules."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_join_full_outer_any_order():
    # a store as the destination, in SeaweedFS's tree order ('b/x' before 'b-y'), the
    # source in bytes
    src = [_e("a"), _e("b-y"), _e("b/x"), _e("d")]
    dst = [_e("b/x"), _e("b-y"), _e("e"), _e("c")]
    out = [(r, s is not None, d is not None)
           for r, s, d in join(src, Location("s3", "bk", "p"), dst, batch=2)]
    assert out == [("a", True, False), ("b-y", True, True), ("b/x", True, True),
                   ("d", True, False), ("c", False, True), ("e", False, True)]


def test_join_merges_a_local_destination_with_a_source_in_tree_order():
    # the local walk in key order, the source in SeaweedFS's tree order: 'b/x' comes
    # before 'b-y', so 'b-y' is asked for after the merge went past it
    src = [_e("a"), _e("b/x"), _e("b/z"), _e("b-y"), _e("d")]
    dst = [_e("b-w"), _e("b-y"), _e("b/x"), _e("c"), _e("e")]
    out = [(r, s is not None, d is not None)
           for r, s, d in join(src, Location(None, path="/tmp/x"), dst)]
    assert out == [("a", True, False), ("b/x", True, True), ("b/z", True, False),
                   ("b-y", True, True), ("d", True, False),
                   ("b-w", False, True), ("c", False, True), ("e", False, True)]


def _tree_order(keys: list[str]) -> list[str]:
    """SeaweedFS's listing order: each directory's files, then its subdirectories."""
    return sorted(keys, key=lambda k: [(1, p) for p in k.split("/")[:-1]] + [(0, k)])


def _key_order(keys) -> list[str]:
    """S3's (and the local walk's) order: UTF-8 bytes, a non-UTF-8 name's own bytes."""
    return sorted(keys, key=lambda k: k.encode("utf-8", "surrogateescape"))


def _listed(keys, order: str) -> list[str]:
    """``keys`` in the order a store might list them."""
    keys = sorted(keys)
    return {"bytes": _key_order(keys), "tree": _tree_order(keys), "reversed": keys[::-1]}[order]


LOCAL, STORE = Location(None, path="/tmp/x"), Location("s3", "bk", "p")
NAMES = st.sets(st.text("ab-/é\udcff", min_size=1, max_size=6))
ORDERS = st.sampled_from(["bytes", "tree", "reversed"])


@settings(max_examples=200, deadline=None)
@given(NAMES, NAMES, ORDERS)
def test_the_merge_join_equals_the_index_join(src_keys, dst_keys, order):
    src, dst_keys = _listed(src_keys, order), _key_order(dst_keys)
    merged = [(r, s and s.rel, d and d.rel)
              for r, s, d in join([_e(k) for k in src], LOCAL, [_e(k) for k in dst_keys])]
    indexed = [(r, s and s.rel, d and d.rel)
               for r, s, d in join([_e(k) for k in src], STORE, [_e(k) for k in dst_keys])]
    n = len(src)
    assert merged[:n] == indexed[:n]                       # source pairs, in source order
    assert sorted(merged[n:]) == sorted(indexed[n:])       # then the destination's own
    assert {r for r, _, _ in merged} == set(src) | set(dst_keys) and len(merged) == len(
        set(src) | set(dst_keys))


@settings(max_examples=200, deadline=None)
@given(NAMES, st.sets(st.text("ab-/é", min_size=1, max_size=6)), ORDERS)
def test_a_local_source_against_a_store_in_any_order(src_keys, dst_keys, order):
    """An upload: the local walk in key order, the store's listing in its own."""
    src_keys, dst = _key_order(src_keys), _listed(dst_keys, order)
    merged = list(join([_e(k) for k in src_keys], STORE, [_e(k) for k in dst], src_loc=LOCAL))
    indexed = list(join([_e(k) for k in src_keys], STORE, [_e(k) for k in dst]))

    def pairs(out):
        return sorted((r, s and s.rel, d and d.rel) for r, s, d in out)
    assert pairs(merged) == pairs(indexed)
    assert all((s is None or s.rel == r) and (d is None or d.rel == r) for r, s, d in merged)
    # matched pairs and the store's own keys come in the store's order
    assert [r for r, _, d in merged if d is not None] == dst


def test_a_local_destination_out_of_key_order_is_refused():
    with pytest.raises(RuntimeError, match="not in key order"):
        list(join([_e("a")], Location(None, path="/tmp/x"), [_e("b"), _e("a")]))


def test_join_rebuilds_what_jobs_need():
    loc = Location("s3", "bk", "pre")
    [(rel, s, d)] = list(join([], loc, [_e("k/1", 7, 5.0, '"e"')]))
    assert s is None and d.info.key == "pre/k/1" and d.info.size == 7 and d.etag == '"e"'
    # a local destination's entry that the merge passed went through the index
    [_, (rel, s, d)] = list(join([_e("z")], Location(None, path="/r"), [_e("k/1", 7, 5.0)]))
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
