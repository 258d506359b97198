"""Printable names of a job's ends (journal keys, messages)."""

from __future__ import annotations

from .jobs import ObjectJob


def job_dst(job: ObjectJob) -> str:
    if job.plan.dst_path:
        return job.plan.dst_path
    name = job.plan.dst_ep.cfg.name if job.plan.dst_ep is not None else "s3"
    return f"{name}:{job.plan.dst_bucket}/{job.plan.dst_key}"
