"""Path errors of the command line: one line with the path and the reason, exit status 2.

Commands check the paths they are given up front (`input_file_problem`,
`output_dir_problem`) and raise `PathError`; `pdtui.cli.main` prints it as
`pdtui COMMAND: PATH: reason` and exits 2. An OSError that names a file and escapes a
command anyway is reported the same way, never as a traceback. Standard library only.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

EXIT_PATH_ERROR = 2


class PathError(Exception):
    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def reason_of(exc: OSError) -> str:
    """The operator's words for an OSError about a path."""
    if exc.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a directory"
    if exc.errno == errno.EEXIST:
        return "already exists"
    return (exc.strerror or str(exc)).lower() if exc.strerror else str(exc)


def _file_in_the_way(path: Path) -> Path | None:
    """The first existing ancestor of path that is not a directory, if any."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def input_file_problem(path: str | os.PathLike) -> str | None:
    """Why path cannot be read as a file, or None."""
    p = Path(path)
    try:
        if p.is_dir():
            return "is a directory, not a file"
        blocker = _file_in_the_way(p)
        if blocker is not None:
            return f"{blocker} is a file, not a directory"
        if not p.exists():
            return "no such file"
        with p.open("rb"):
            pass
    except OSError as exc:
        return reason_of(exc)
    return None


def output_dir_problem(path: str | os.PathLike) -> str | None:
    """Why path cannot be (created and) written as a directory, or None."""
    p = Path(path)
    try:
        if p.exists() and not p.is_dir():
            return "exists and is not a directory"
        blocker = _file_in_the_way(p)
        if blocker is not None:
            return f"{blocker} is a file, not a directory"
        existing = p
        while not existing.exists():
            existing = existing.parent
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"not writable: permission denied on {existing}" if existing != p else "not writable: permission denied"
    except OSError as exc:
        return reason_of(exc)
    return None


def expand_user(path: str | os.PathLike) -> Path:
    """`~` and `~user` expanded where they can be; a `~name` of no such user stays as written
    (pathlib's expanduser raises RuntimeError for it, os.path's leaves it)."""
    return Path(os.path.expanduser(os.fspath(path)))
