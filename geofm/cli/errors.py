"""How ``geofm`` reports a wrong input or configuration: ``geofm COMMAND: error: ...``."""

from __future__ import annotations

import argparse
import sys

#: what a command reports without a traceback: the input or its configuration is wrong
USER_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    ValueError,
    KeyError,
    OSError,
    argparse.ArgumentError,
)


def _report(command: str, err: BaseException) -> int:
    # KeyError's str() quotes its message; show the message itself
    message = err.args[0] if isinstance(err, KeyError) and err.args else err
    print(f"geofm {command}: error: {message}", file=sys.stderr)
    return 2


def reported(command: str, run, *args) -> int:
    """``run(*args)``, its user errors reported as one line."""
    try:
        return run(*args)
    except USER_ERRORS as err:
        return _report(command, err)


def configured(command: str, prepare, run) -> int:
    """Run a command configured by a parser that may exit (``--help``, ``--print_config``):
    its exit code passes through; errors in the configuration or the input are one line."""
    try:
        prepared = prepare()
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 2)
    except USER_ERRORS as err:
        return _report(command, err)
    return run(prepared)
