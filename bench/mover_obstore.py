"""obstore baseline for bench/mover.py: copy a flat directory to/from an S3 prefix.

    python bench/mover_obstore.py upload   LOCAL_DIR        s3://bucket/prefix/
    python bench/mover_obstore.py download s3://bucket/prefix/ LOCAL_DIR

A plain script, as a user of obstore would write it:
- one ``S3Store`` for the bucket, endpoint/keys/region from the AWS environment
  (``allow_http`` for an ``http://`` endpoint, path-style requests);
- asyncio, at most ``--concurrency`` (default 32) objects in flight (a semaphore);
- upload: ``obstore.put_async(store, key, Path(file))`` with its defaults
  (multipart above 5 MiB, 5 MiB parts, 12 parts in flight per object);
- download: ``obstore.get_async`` and ``GetResult.stream()`` (default 10 MiB chunks),
  each chunk written to the file in order: one GET per object, no ranged parallelism.
Exit 0 on success; 1 with one line on stderr per failed object.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import obstore
from obstore.store import S3Store


def split_s3(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise SystemExit(f"not an s3:// URL: {url}")
    bucket, _, prefix = url[5:].partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


def make_store(bucket: str) -> S3Store:
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    kwargs: dict[str, object] = {}
    if endpoint:
        kwargs["endpoint"] = endpoint
    return S3Store(
        bucket,
        access_key_id=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        region=os.environ.get("AWS_REGION", "us-east-1"),
        virtual_hosted_style_request=False,
        client_options={"allow_http": endpoint.startswith("http://")},
        **kwargs,
    )


async def run(direction: str, src: str, dst: str, concurrency: int) -> int:
    sem = asyncio.Semaphore(concurrency)
    failed = 0

    if direction == "upload":
        bucket, prefix = split_s3(dst)
        store = make_store(bucket)
        root = Path(src)
        files = [Path(d) / fn for d, _x, fs in os.walk(root) for fn in sorted(fs)]
        jobs = [(p, prefix + p.relative_to(root).as_posix()) for p in files]

        async def one(path: Path, key: str) -> None:
            async with sem:
                await obstore.put_async(store, key, path)

    else:
        bucket, prefix = split_s3(src)
        store = make_store(bucket)
        root = Path(dst)
        jobs = []
        for batch in obstore.list(store, prefix.rstrip("/") or None):
            for meta in batch:
                key = meta["path"]
                jobs.append((root / key[len(prefix) :], key))

        async def one(path: Path, key: str) -> None:
            async with sem:
                path.parent.mkdir(parents=True, exist_ok=True)
                resp = await obstore.get_async(store, key)
                with open(path, "wb") as f:
                    async for chunk in resp.stream():
                        f.write(chunk)

    results = await asyncio.gather(*(one(p, k) for p, k in jobs), return_exceptions=True)
    for (_p, key), r in zip(jobs, results, strict=True):
        if isinstance(r, BaseException):
            failed += 1
            print(f"obstore: {key}: {type(r).__name__}: {r}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("direction", choices=["upload", "download"])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--concurrency", type=int, default=32, help="objects in flight (32)")
    a = ap.parse_args(argv)
    return asyncio.run(run(a.direction, a.src, a.dst, a.concurrency))


if __name__ == "__main__":
    sys.exit(main())
