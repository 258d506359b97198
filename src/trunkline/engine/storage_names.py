"""Printable names of a job's ends (journal keys, messages)."""

from __future__ import annotations

from .jobs import ObjectJob


def job_dst(job: ObjectJob) -> str:
    if job.dst_path:
        return job.dst_path
    name = job.dst_ep.cfg.name if job.dst_ep is not None else "s3"
    return f"{name}:{job.dst_bucket}/{job.dst_key}"
