"""Writing files the user may care about: atomically, keeping a backup of what is replaced."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def atomic_write(
    path: str | Path, text: str, mode: int | None = None, backup: bool = False, keep_backups: int = 0,
    durable: bool = True,
) -> Path | None:
    """Write text to path so that readers see the old file or the new one, never half.

    durable=False skips the fsync (the rename alone keeps readers from a half-written
    file): for files that only describe live processes, such as a run directory's, which
    mean nothing after the machine went down; each fsync costs milliseconds on the
    critical path of `pdtui up`.

    With backup=True an existing file is first copied to `<name>.bak`; with keep_backups=N
    to `<name>.bak.<n>` (n one more than the newest), keeping the newest N. The backup's
    path is returned (None when there was nothing to back up).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    backup_path = None
    if keep_backups and path.exists():
        backup_path = _numbered_backup(path, keep_backups)
    elif backup and path.exists():
        backup_path = path.with_name(path.name + ".bak")
        shutil.copy2(path, backup_path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        elif path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return backup_path


def numbered_backups(path: str | Path) -> list[Path]:
    """`<name>.bak.<n>` beside path, oldest first."""
    path = Path(path)
    found = []
    for candidate in path.parent.glob(path.name + ".bak.*"):
        suffix = candidate.name[len(path.name) + len(".bak."):]
        if suffix.isdigit():
            found.append((int(suffix), candidate))
    return [p for _, p in sorted(found)]


def _numbered_backup(path: Path, keep: int) -> Path:
    existing = numbered_backups(path)
    number = int(existing[-1].name.rsplit(".", 1)[1]) + 1 if existing else 1
    backup = path.with_name(f"{path.name}.bak.{number}")
    shutil.copy2(path, backup)  # keeps the mode: a profile with secrets stays private
    for old in (existing + [backup])[:-keep]:
        try:
            old.unlink()
        except FileNotFoundError:
            pass
    return backup
