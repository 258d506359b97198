"""S3's multipart limits, the one place they are written (the part planner and the
store's answers are both held to them). No imports: the planner is sans-I/O."""

MiB = 1 << 20

MIN_PART = 5 * MiB
"""A part's least size (all but the last)."""
MAX_PART = 5 * 1024 * MiB
"""A part's greatest size."""
MAX_PARTS = 10_000
"""Parts of one upload, numbered 1..MAX_PARTS."""
