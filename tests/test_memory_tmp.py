"""The run's temporary files go to a tmpfs only when it qualifies (tests/memory_tmp.py)."""

from __future__ import annotations

from pathlib import Path

from tests.memory_tmp import MIN_FREE_BYTES, memory_tmp_dir, tmpfs_mounts

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /dev/shm tmpfs rw,relatime,size=24683772k 0 0
tmpfs /run/with\\040space tmpfs rw 0 0
devtmpfs /dev devtmpfs rw,relatime 0 0
"""


def plenty(_: Path) -> int:
    return MIN_FREE_BYTES


def test_only_tmpfs_mount_points_are_read_from_the_mount_table() -> None:
    assert tmpfs_mounts(MOUNTS) == {Path("/dev/shm"), Path("/run/with space")}
    assert tmpfs_mounts("") == set()
    assert tmpfs_mounts("garbage\n\n") == set()


def test_a_writable_tmpfs_with_room_is_chosen(tmp_path: Path) -> None:
    mounts = f"tmpfs {tmp_path} tmpfs rw 0 0\n"
    assert memory_tmp_dir({}, mounts, plenty, candidate=tmp_path) == tmp_path


def test_a_tmpdir_the_caller_set_wins(tmp_path: Path) -> None:
    mounts = f"tmpfs {tmp_path} tmpfs rw 0 0\n"
    assert memory_tmp_dir({"TMPDIR": "/elsewhere"}, mounts, plenty, candidate=tmp_path) is None


def test_a_folder_on_disk_is_not_chosen(tmp_path: Path) -> None:
    mounts = f"/dev/vda {tmp_path} ext4 rw 0 0\n"
    assert memory_tmp_dir({}, mounts, plenty, candidate=tmp_path) is None


def test_a_small_tmpfs_is_not_chosen(tmp_path: Path) -> None:
    """A container's default /dev/shm (64 MB) would run out mid-run."""
    mounts = f"tmpfs {tmp_path} tmpfs rw 0 0\n"
    assert memory_tmp_dir({}, mounts, lambda _: MIN_FREE_BYTES - 1, candidate=tmp_path) is None


def test_a_missing_candidate_is_not_chosen(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    assert memory_tmp_dir({}, f"tmpfs {gone} tmpfs rw 0 0\n", plenty, candidate=gone) is None
