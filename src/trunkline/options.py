"""TransferOptions: every knob of the mover and its default, in one frozen, validated value.

Why one value: ``copy``'s knobs used to be re-declared as 21 parameters in ``copy``, again
in ``copy_on_ray``, popped by name in ``sync`` and listed a third time with their defaults
in the CLI's help. Now the CLI builds one ``TransferOptions`` (its help text reads the
defaults from here), the API passes it down, the cluster ships it to every worker, and
the engine reads it. It is frozen so that nobody downstream changes a knob under another
component's feet (derive a variant with ``dataclasses.replace``), and validated when
built so that a wrong value is a ``UsageError`` at the edge rather than a failure deep in
a worker thread.

Sizes and rates may be given as text ("16MiB", "4Gbit"): they are normalised to ints
(bytes) and floats (bytes/s) here, once. This module sits beside ``errors`` and ``units``
at the bottom of the house: the engine imports it, it imports nothing of the mover.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .errors import UsageError
from .units import MiB, parse_duration, parse_size, parse_transfer_rate

DEFAULT_MAX_CONNECTIONS = 64
"""Upper bound of the tuner: enough streams to fill 100 Gbit/s at the RTTs we meet."""

DEFAULT_PART_SIZE = 16 * MiB
"""Where the tuner starts the part size of ranged GETs and multipart PUTs."""

MIN_PART_SIZE = 5 * MiB
"""S3's minimum part size (all but the last part of a multipart upload)."""

MAX_PART_SIZE = 5 * 1024 * MiB
"""S3's maximum part size. Both bounds as ``storage/s3_limits.py`` (options sit below
storage in the layers; tests/unit/test_options.py holds them equal). A part size of 1e100
was an OverflowError in SQLite."""

DEFAULT_MAX_MEMORY = 512 * MiB
"""Bound on part buffers held while streaming between stores."""

DEFAULT_RETRIES = 7
"""Retries per part after the first try (``engine/retry.py`` spaces them)."""

DEFAULT_READ_TIMEOUT = 60.0
"""Seconds without a byte before a connection is given up and the part retried."""

DEFAULT_MIN_RATE = 1024.0
DEFAULT_MIN_RATE_WINDOW = 60.0
"""A response body slower than 1 KiB/s for a whole minute fails (retried on a new
connection): a trickle a read timeout never catches. Far below any healthy connection,
even 64 of them sharing a slow WAN link; time our own reader lags (a --bwlimit, a slow
disk) never counts (``wire/speed_guard.py``)."""


@dataclass(frozen=True)
class TransferOptions:
    """The knobs of one transfer (cp, sync, a cluster copy).

    ``tune`` lets the closed-loop tuner move the number of connections (up to
    ``max_connections``) and the part size; ``connections`` and ``part_size`` pin them.
    ``bwlimit`` caps the overall rate (bytes/s, or text: '500M' = 500 MiB/s, '4Gbit'),
    ``bwlimit_endpoint`` one endpoint's. ``direct_io`` writes downloads of 4 MiB and more
    around the page cache. ``checksums`` sends and checks CRC32C. ``server_side`` lets
    s3 -> s3 on one store copy without the bytes passing through this host. ``resume``
    keeps a journal in ``state_dir`` so that a rerun continues where a run stopped.
    ``require_verified`` fails an object that no checksum or ETag of the store could check
    (by default it is reported unverified). ``min_rate`` (bytes/s, or ``'1K,60s'``) over
    ``min_rate_window`` seconds: a response body slower than that fails as retryable and
    its connection is closed (0: off). ``one_core`` keeps a run of small downloads or
    uploads on the CPU it started on, until its first large object
    (``engine/affinity.py``).
    """

    max_connections: int | None = None   # None: DEFAULT_MAX_CONNECTIONS, or `connections`
    connections: int | None = None
    part_size: int | str | None = None    # None: tuned from DEFAULT_PART_SIZE
    max_memory: int | str = DEFAULT_MAX_MEMORY
    retries: int = DEFAULT_RETRIES
    read_timeout: float = DEFAULT_READ_TIMEOUT
    min_rate: float | str | None = DEFAULT_MIN_RATE   # bytes/s, or 'RATE,DURATION'; 0: off
    min_rate_window: float | str = DEFAULT_MIN_RATE_WINDOW
    tune: bool = True
    bwlimit: float | str | None = None
    bwlimit_endpoint: Mapping[str, float | str] | None = None
    direct_io: bool = True
    checksums: bool = True
    server_side: bool = True
    resume: bool = True
    state_dir: str | None = None
    require_verified: bool = False   # an object nothing the store keeps could check fails
    one_core: bool = True   # a run of small objects keeps its threads on one CPU

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if self.connections is not None and self.connections < 1:
            raise UsageError("connections must be >= 1")
        if self.max_connections is not None and self.max_connections < 1:
            raise UsageError("max_connections must be >= 1")
        if self.max_connections is None:   # pinned connections are also the bound
            put("max_connections", self.connections or DEFAULT_MAX_CONNECTIONS)
        elif self.connections is not None:
            put("max_connections", max(self.connections, self.max_connections))
        if self.part_size is not None:
            put("part_size", parse_size(self.part_size))
            if self.part_size < MIN_PART_SIZE:  # type: ignore[operator]
                raise UsageError("part_size must be at least 5 MiB (the S3 minimum)")
            if self.part_size > MAX_PART_SIZE:  # type: ignore[operator]
                raise UsageError("part_size must be at most 5 GiB (the S3 maximum)")
        # a stream needs at least one part buffer per connection to keep them all busy
        put("max_memory", max(parse_size(self.max_memory), self.initial_part_size))
        if self.retries < 0:
            raise UsageError("retries must be >= 0")
        if not self.read_timeout > 0:
            raise UsageError("read_timeout must be > 0 seconds")
        rate, window = self.min_rate, self.min_rate_window
        if isinstance(rate, str) and "," in rate:
            rate, window = (x.strip() for x in rate.split(",", 1))
        try:
            put("min_rate", parse_transfer_rate(rate) or 0.0)
            put("min_rate_window", parse_duration(window, bare=1.0))
        except ValueError as e:
            raise UsageError(f"min_rate: {e}") from None
        if self.min_rate < 0 or not self.min_rate_window > 0:  # type: ignore[operator]
            raise UsageError("min_rate must be >= 0 and its window > 0 seconds")
        put("bwlimit", parse_transfer_rate(self.bwlimit))
        if self.bwlimit_endpoint:
            put("bwlimit_endpoint", {k: parse_transfer_rate(v)
                                     for k, v in self.bwlimit_endpoint.items()})
        else:
            put("bwlimit_endpoint", None)

    @property
    def min_rate_pair(self) -> tuple[float, float] | None:
        """(bytes/s, seconds) of the minimum-rate guard, or None when it is off."""
        if not self.min_rate:
            return None
        return float(self.min_rate), float(self.min_rate_window)  # type: ignore[arg-type]

    @property
    def part_size_fixed(self) -> bool:
        """The user pinned the part size: the tuner leaves it alone."""
        return self.part_size is not None

    @property
    def initial_part_size(self) -> int:
        """The part size a transfer starts with (pinned, or the tuner's start)."""
        return int(self.part_size) if self.part_size is not None else DEFAULT_PART_SIZE

    @classmethod
    def build(cls, base: TransferOptions | None = None, **overrides: Any) -> TransferOptions:
        """``base`` (or the defaults) with ``overrides``; a None override means "default".

        This is how the API accepts both ``options=`` and the old keyword style
        (``copy(src, dst, part_size='64MiB')``); an unknown name is a TypeError, as for
        any Python call."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unexpected transfer options {unknown}")
        given = {k: v for k, v in overrides.items() if v is not None}
        if base is None:
            return cls(**given)
        if not given:
            return base
        return cls(**{**{n: getattr(base, n) for n in names}, **given})

    def summary(self) -> dict[str, Any]:
        """The knobs a result reports (``TransferResult.options``)."""
        return {
            "max_connections": self.max_connections,
            "connections": self.connections,
            "tune": self.tune and self.connections is None,
            "part_size": self.initial_part_size,
            "max_memory": self.max_memory,
            "bwlimit": self.bwlimit,
            "direct_io": self.direct_io,
            "require_verified": self.require_verified,
        }


DEFAULTS = TransferOptions()
"""The mover's defaults, as the CLI's help shows them."""
