"""boto3/s3transfer baseline for bench/mover.py: copy a flat directory to/from an S3 prefix.

    python bench/mover_boto3.py upload   LOCAL_DIR        s3://bucket/prefix/
    python bench/mover_boto3.py download s3://bucket/prefix/ LOCAL_DIR

What it does, as a typical user of boto3 would:
- ``boto3.client("s3")`` from the AWS environment (``AWS_ENDPOINT_URL``, keys, region),
  path-style addressing (a loopback IP endpoint has no virtual hosts);
- ``TransferConfig()`` defaults (multipart threshold 8 MiB, 8 MiB parts,
  ``max_concurrency`` 10 threads per transfer);
- a ``ThreadPoolExecutor`` of ``--workers`` (default 8) over objects, each calling
  ``upload_file`` / ``download_file``; the client's connection pool is sized
  ``workers x max_concurrency`` so that no connection is discarded.
Exit 0 on success; 1 with one line on stderr per failed object.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config


def split_s3(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise SystemExit(f"not an s3:// URL: {url}")
    bucket, _, prefix = url[5:].partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("direction", choices=["upload", "download"])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--workers", type=int, default=8, help="objects in flight (default 8)")
    a = ap.parse_args(argv)

    tcfg = TransferConfig()  # library defaults, on purpose
    client = boto3.client(
        "s3",
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=a.workers * tcfg.max_request_concurrency,
        ),
    )

    jobs: list[tuple[str, str, str]] = []  # (local path, bucket, key)
    if a.direction == "upload":
        bucket, prefix = split_s3(a.dst)
        root = Path(a.src)
        for dirpath, _dirs, files in os.walk(root):
            for fn in sorted(files):
                p = Path(dirpath) / fn
                jobs.append((str(p), bucket, prefix + p.relative_to(root).as_posix()))
    else:
        bucket, prefix = split_s3(a.src)
        root = Path(a.dst)
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix) :]
                dest = root / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                jobs.append((str(dest), bucket, obj["Key"]))

    def one(job: tuple[str, str, str]) -> None:
        path, b, key = job
        if a.direction == "upload":
            client.upload_file(path, b, key, Config=tcfg)
        else:
            client.download_file(b, key, path, Config=tcfg)

    failed = 0
    with ThreadPoolExecutor(max_workers=a.workers) as pool:
        futs = {pool.submit(one, j): j for j in jobs}
        for f in as_completed(futs):
            exc = f.exception()
            if exc is not None:
                failed += 1
                print(f"boto3: {futs[f][2]}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
