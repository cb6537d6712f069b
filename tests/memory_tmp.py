"""The test run's temporary files in memory, where the machine offers a tmpfs for it.

The suite creates and deletes tens of thousands of files: SQLite journals, LanceDB versions, Dovecot's
mailboxes, Chromium's profiles, each test's folder. On an ext4 disk every create scans the inode tables
(``find_inode_bit``, ``recently_deleted``): about 10 s of the run's kernel CPU went there. A tmpfs has no
inode tables, and the kill -9 tests kill processes, not the machine, so nothing they prove needs a disk.

The run uses ``/dev/shm`` (a tmpfs on Linux) only when TMPDIR is unset and it has room; a TMPDIR the
caller set always wins, and anything else keeps the system's default.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

MEMORY_TMP = Path("/dev/shm")
# A run keeps at most a few hundred MB at once (passed tests' folders go as each test ends); a container's
# default /dev/shm of 64 MB is too small, so the run stays on disk there.
MIN_FREE_BYTES = 2 * 1024**3


def tmpfs_mounts(mounts_text: str) -> set[Path]:
    """The mount points of tmpfs filesystems in a ``/proc/self/mounts`` text."""
    points = set()
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "tmpfs":
            points.add(Path(fields[1].replace("\\040", " ")))
    return points


def memory_tmp_dir(
    environ: Mapping[str, str],
    mounts_text: str,
    free_bytes: Callable[[Path], int],
    candidate: Path = MEMORY_TMP,
) -> Path | None:
    """The directory to use as TMPDIR, or None to leave the default: ``candidate`` when TMPDIR is unset,
    ``candidate`` is a tmpfs mount that this user can write to, and it has ``MIN_FREE_BYTES`` free."""
    if environ.get("TMPDIR"):
        return None
    if candidate not in tmpfs_mounts(mounts_text) or not os.access(candidate, os.W_OK | os.X_OK):
        return None
    return candidate if free_bytes(candidate) >= MIN_FREE_BYTES else None


def use_memory_tmp() -> Path | None:
    """Point TMPDIR (for this process, the test workers and everything they start) at a tmpfs, if one
    qualifies (see ``memory_tmp_dir``). Call it before the workers start. Returns the directory chosen."""
    try:
        mounts = Path("/proc/self/mounts").read_text()
    except OSError:  # not Linux: no /proc, and no /dev/shm to speak of
        return None
    chosen = memory_tmp_dir(os.environ, mounts, lambda path: shutil.disk_usage(path).free)
    if chosen is not None:
        os.environ["TMPDIR"] = str(chosen)
        tempfile.tempdir = None  # tempfile caches its first answer; ask it again
    return chosen
