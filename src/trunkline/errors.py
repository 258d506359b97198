"""The one exception tree of trunkline, and whether each failure is worth another try.

Why one module: the retry loops, the CLI's exit codes and the Python API all have to
agree on what a failure *is*. Before this module there were eleven exception classes in
nine files without a common base, the CLI mapped every ``ValueError`` to "usage error"
(so an internal bug read as a user mistake) and the retry policy kept its own list of
types. Now every failure that trunkline raises on purpose is a ``TrunklineError``, says
itself whether a retry may help (``retryable``), and the CLI maps by class:

    TrunklineError            exit 1, one line
      UsageError              exit 2: the command or its arguments are wrong (a ValueError)
        ClusterUnavailable    exit 2: no Ray cluster to run on
        LocationError         (url.py) a source or destination that cannot be understood
        TaxonomyError         (flows/enrich) a classification rules file that is wrong
      DataError               bytes from outside are malformed (a ValueError): exit 1
        DecodeError           (flows/decode) a malformed flow datagram, counted per reason
        PcapError             (flows/sources) a file that is not a readable capture
      BudgetExceeded          (flows/decode) an exporter over its template memory: counted
      ToolNotFound            (tools.py) a program trunkline needs is not installed
      UnsafeDestination       (storage/partial) a symlink or foreign file where a download
                              would be written: never followed, never retried (an OSError)
      AlreadyRunning          the same copy holds its journal's lock in another process
      TransferError           moving bytes failed
        NetworkError          reset, refused, timed out, closed mid-body: retried
          ConnectionClosed    the peer closed (a ConnectionError too)
          ReadTimeout         no byte within the read timeout (a TimeoutError too)
          TooSlow             a body below the minimum rate for its window (--min-rate)
        ProtocolError         the server's answer breaks HTTP framing: retried on a new connection
        IntegrityError        bytes do not match their checksum or length: retried
          NotVerified         nothing could check the object (--require-verified): never retried
        SourceChanged         the source object changed under us: never retried
        StoreError            the store answered with an error: retried for 5xx/throttling only

Anything else escaping the API is a bug and the CLI shows its traceback. The classes
marked with a module stay in that module (their callers import them from there), with
their parent from here; ``tests/unit/test_errors_units.py`` walks every module of the
package and fails on an exception class outside this tree.

The S3 status and code lists live here (not in storage/) because they are what
``StoreError.retryable`` means; the *budget* of retries is ``engine/retry.py``'s.
"""

from __future__ import annotations

# S3 answers that a later try may not get: server trouble, throttling, damaged bytes.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
RETRYABLE_CODES = frozenset({
    "SlowDown",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeTooSkewed",
    "Throttling",
    "ThrottlingException",
    "BadDigest",  # the bytes were damaged in flight: sending again is the fix
})
SLOWDOWN_STATUS = frozenset({429, 503})
SLOWDOWN_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException"})


class TrunklineError(Exception):
    """Base of every failure trunkline raises on purpose (the CLI: exit 1, one line)."""

    retryable: bool = False


class UsageError(TrunklineError, ValueError):
    """The request itself is wrong (bad location, option or value): exit 2, never retried.

    Also a ``ValueError`` so that callers validating arguments the Python way keep working.
    """


class ClusterUnavailable(UsageError):
    """No usable Ray cluster (not installed, unreachable, no node with the resource)."""


class DataError(TrunklineError, ValueError):
    """Bytes from outside are malformed: a datagram, a capture file, a flow log.

    Exit 1 (the input is bad, not the command); a ``ValueError`` too, as it always was."""


class BatchNotStored(TrunklineError):
    """A batch of flow records, or some of it, could not be stored (a full disk, a lake
    that refuses writes). ``lost`` counts the records not stored: a collector adds them
    to its lost records and goes on with the next batch."""

    def __init__(self, lost: int, cause: BaseException) -> None:
        super().__init__(f"{lost} records not stored: {type(cause).__name__}: {cause}")
        self.lost = lost
        self.cause = cause


class TransferError(TrunklineError):
    """Moving bytes failed; ``retryable`` says whether another try may succeed."""

    retryable = True


class NetworkError(TransferError):
    """The connection failed: reset, refused, closed early, timed out. Retried."""


class ConnectionClosed(NetworkError, ConnectionError):
    """The peer closed the connection (or it was never open) before the answer was whole."""


class ReadTimeout(NetworkError, TimeoutError):
    """No byte arrived (or could be sent) within the read timeout."""


class TooSlow(NetworkError):
    """A response body arrived slower than the minimum rate for the whole window
    (``--min-rate``, ``wire/speed_guard.py``): its connection was closed. Retried."""


class ProtocolError(TransferError):
    """The server's bytes break HTTP framing; the connection cannot be trusted any more."""


class IntegrityError(TransferError):
    """Bytes received do not match their checksum or length (damaged in flight): retried."""


class PartialSizeMismatch(IntegrityError, OSError):
    """A finished download's partial file does not hold the object's size (EIO): it is
    never renamed into place, and a rerun does not resume from it."""


class SourceChanged(TransferError):
    """The source object changed under us (size or ETag differ from the listing).

    Not retried: another try would mix two versions of the object."""

    retryable = False


class NotVerified(IntegrityError):
    """Nothing the store keeps could check the object, and ``--require-verified`` is set.

    Not retried: another try would find the same nothing."""

    retryable = False


class AlreadyRunning(TrunklineError):
    """Another process holds this transfer's journal: the same copy is running."""


class StoreError(TransferError):
    """An error answer from the store, with its S3 code and whether a retry may help."""

    def __init__(self, status: int, code: str, message: str, op: str = "", key: str = ""):
        self.status = status
        self.code = code
        self.message = message
        self.op = op
        self.key = key
        super().__init__(f"{op} {key}: {status} {code}: {message}".strip())

    @property  # type: ignore[override]
    def retryable(self) -> bool:
        return self.status in RETRYABLE_STATUS or self.code in RETRYABLE_CODES

    @property
    def slowdown(self) -> bool:
        """The store asks us to slow down (the tuner backs off, the retry waits longer)."""
        return self.code in SLOWDOWN_CODES or self.status in SLOWDOWN_STATUS


def is_retryable(exc: BaseException) -> bool:
    """Whether another try may succeed: our classes say so; foreign resets and timeouts
    (``ConnectionError``/``TimeoutError`` from the socket layer) are retried too."""
    if isinstance(exc, TrunklineError):
        return bool(exc.retryable)
    return isinstance(exc, (ConnectionError, TimeoutError))


def is_slowdown(exc: BaseException) -> bool:
    """Whether ``exc`` is the store throttling us."""
    return isinstance(exc, StoreError) and exc.slowdown


__all__ = [
    "AlreadyRunning", "ClusterUnavailable", "ConnectionClosed", "DataError", "IntegrityError", "NetworkError",
    "NotVerified", "PartialSizeMismatch", "ProtocolError",
    "ReadTimeout", "SourceChanged", "StoreError", "TooSlow", "TransferError", "TrunklineError",
    "UsageError", "is_retryable", "is_slowdown",
]
