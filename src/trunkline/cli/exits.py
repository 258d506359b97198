"""The exit codes of every command, in one place (the mover's and the flow lens's alike).

0: done. 1: something failed, and one line says what (any ``TrunklineError``, or an
``OSError``: the local disk or network said no). 2: the command or its arguments are
wrong (``UsageError``). 130: interrupted. 141: the reader of standard output went away
(``trunkline ls -r ... | head``), silently, as a program the shell's SIGPIPE ends (128 + 13):
a pipeline with ``pipefail`` still sees it. Anything else escaping a command is a bug in
trunkline: it is not dressed up as a usage error, it propagates with its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from ..errors import TrunklineError, UsageError
from ..text import safe
from .startup import work_begins

T = TypeVar("T")


def exit_code(exc: BaseException) -> int | None:
    """The exit code for ``exc``, or None when it is a bug (let it show its traceback)."""
    if isinstance(exc, UsageError):
        return 2
    if isinstance(exc, (TrunklineError, OSError)):
        return 1
    return None


def fail(debug: bool, code: int, exc: BaseException | str) -> NoReturn:
    """Print ``exc`` as one terminal-safe line (its traceback too with ``--debug``), exit."""
    if debug and isinstance(exc, BaseException):
        import traceback  # only with --debug

        traceback.print_exc()
    click.echo(f"trunkline: error: {safe(exc)}", err=True)
    sys.exit(code)


def guarded(debug: bool, fn: Callable[..., T], *args: Any,
            usage: tuple[type[BaseException], ...] = (), **kw: Any) -> T:
    """``fn(*args, **kw)``, its failures mapped to exit codes by ``exit_code``.

    ``usage``: foreign exception types that, from this call, can only mean a wrong
    argument (e.g. a plain ``ValueError`` of a parser the CLI hands the argument to).
    The command's work begins here: the garbage collector comes back on (``startup``)."""
    work_begins()
    try:
        return fn(*args, **kw)
    except KeyboardInterrupt:
        click.echo("trunkline: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError as e:
        if not _stdout_gone():   # a connection's EPIPE, not ours to hide
            fail(debug, 1, e)
        # nothing more can reach the reader; the interpreter's last flush must not fail
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
        sys.exit(141)
    except Exception as e:
        code = exit_code(e)
        if code is None and usage and isinstance(e, usage):
            code = 2
        if code is None:
            raise
        fail(debug, code, e)


def _stdout_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed (poll says POLLERR)."""
    import select

    try:
        p = select.poll()
        p.register(sys.stdout.fileno(), 0)
        return any(ev & select.POLLERR for _, ev in p.poll(0))
    except (OSError, ValueError, AttributeError):
        return False
