"""The one way train.py and tools/*.py end: a user error is an `error:` block, a bug a traceback.

    if __name__ == "__main__":
        run_cli(main)

`main(argv)` returns an exit code (anything but an int, e.g. None, means 0). A `UserError` prints as

    error: <what went wrong, where (file, key or flag)>
      <how to fix it>

on stderr and exits with its exit code (2 for usage, 1 otherwise); so do a full disk, an
unwritable folder and a missing file the OS reports (they name the path). Anything else is
a bug and keeps its traceback. `--debug` anywhere on the command line (removed before
`main` sees it) or PROMPTLAB_DEBUG=1 shows the traceback of user errors too.
"""
from __future__ import annotations

import errno
import os
import sys
from typing import Callable, NoReturn, Sequence

from engine.errors import UserError

DEBUG_FLAG = "--debug"
DEBUG_ENV = "PROMPTLAB_DEBUG"
_FREE_OR_MOVE = "Free space in {folder} or make it writable, or choose another folder (e.g. --output-dir)"
_OS_ERRORS = {  # errno: (what happened, what to do)
    errno.ENOSPC: ("no space left on the device", _FREE_OR_MOVE),
    errno.EDQUOT: ("the disk quota is exceeded", _FREE_OR_MOVE),
    errno.EACCES: ("permission denied", _FREE_OR_MOVE),
    errno.EPERM: ("operation not permitted", _FREE_OR_MOVE),
    errno.EROFS: ("the file system is read-only", _FREE_OR_MOVE),
    errno.ENOTDIR: ("a part of that path is a file, not a folder",
                    "Rename or move the file that stands where a folder should be, or choose another folder "
                    "(e.g. --output-dir)"),
    errno.EFBIG: ("the file is larger than this file system or process allows",
                  "Write to another file system (FAT32 stops at 4 GB), or raise the limit (`ulimit -f`)"),
}


def debug_requested(argv: Sequence[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes", "on")


def error_block(message: str) -> str:
    """`error: ` before the first line, the others indented under it."""
    lines = str(message).strip().splitlines() or ["(no message)"]
    return "\n".join([f"error: {lines[0]}", *(f"  {line.strip()}" for line in lines[1:] if line.strip())])


def os_error_message(err: OSError) -> str | None:
    """A one-block message for disk and permission failures, naming the folder to fix."""
    if err.errno not in _OS_ERRORS:
        return None
    what, fix = _OS_ERRORS[err.errno]
    path = err.filename or ""
    folder = os.path.dirname(os.path.abspath(path)) if path else "the output folder"
    verb = "use" if err.errno == errno.ENOTDIR else "write"  # ENOTDIR comes from reads as well
    return (f"cannot {verb} {path or 'a file'}: {what} ({os.strerror(err.errno)}).\n"
            f"{fix.format(folder=folder)}; nothing half-written was kept, so rerunning the same command "
            "continues the run.")


def run_cli(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> NoReturn:
    """Run `main` as a command and exit with its code, printing user errors without a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        code = main(argv)
    except UserError as err:
        if debug:
            raise
        _flush_streams()
        print(error_block(str(err)), file=sys.stderr)
        sys.exit(err.exit_code)
    except OSError as err:
        message = os_error_message(err)
        if message is None or debug:
            raise
        _flush_streams()
        print(error_block(message), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        _flush_streams()
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
