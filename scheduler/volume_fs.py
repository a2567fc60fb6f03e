"""Size-limited persistent volumes: each bucket is an ext4 file system in a sparse image file, loop-mounted on
the host at its folder (DATA_DIR/volumes/OWNER/BUCKET, image beside it as BUCKET.img), which the sandbox or
container binds at the Space's mount path.

A Space that writes past the limit gets ENOSPC inside the Space, and the host's disk holds at most the image's
size for it (the image is sparse: only what was written takes room). The limit is `Settings.volume_limit_bytes`
(HF's old storage tiers were small 20 GB / medium 150 GB / large 1 TB); raising it grows the file system the
next time it is mounted (offline: at spacehost's next start); lowering it never shrinks an existing one (it says so in the log).

Mounting needs root (as the sandbox does). Without root, or where mkfs.ext4/loop devices are missing, the volume
stays a plain folder with no limit, and `prepare` says why. A folder that already holds files from before (no
image) is left as it is, unlimited, rather than hidden under a new mount. Mounts outlive a Space's instance
(Spaces of one owner share a bucket); `unmount_all` releases them when spacehost stops its Spaces.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)
BLOCK = 4096
MIN_BYTES = 8 << 20  # below this ext4's own metadata leaves no room


def image_of(folder: Path) -> Path:
    return folder.with_name(folder.name + ".img")


def mounted(folder: Path) -> bool:
    return os.path.ismount(folder)


def mkfs_argv(image: Path, uid: int) -> list[str]:
    """An ext4 with no reserved blocks, owned by the app's uid at its root. Nothing is zeroed: the image is a
    new sparse file, which reads as zeros already (the mount's `noinit_itable` skips the kernel's zeroing too),
    so a new volume takes almost no room on the host."""
    return ["mkfs.ext4", "-q", "-F", "-m", "0", "-E",
            f"root_owner={uid}:{uid},lazy_itable_init=1,lazy_journal_init=1,nodiscard", str(image)]


def grow_plan(current: int, wanted: int) -> int | None:
    """The new image size when the limit changed: bigger only (ext4 does not shrink online); None: keep."""
    wanted = max(MIN_BYTES, wanted - wanted % BLOCK)
    return wanted if wanted > current else None


def _run(*argv: str, ok: tuple[int, ...] = (0,)) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode not in ok:
        raise OSError(f"{argv[0]}: {proc.stderr.strip() or proc.stdout.strip()}")


def prepare(folder: Path, limit_bytes: int, uid: int) -> str | None:
    """Make `folder` the mount point of its bucket's size-limited file system (created or grown as needed).
    Returns None when the limit holds, else why the folder stays unlimited. Blocking (mkfs: well under 1 s)."""
    image = image_of(folder)
    if limit_bytes <= 0:
        return "no volume limit configured"
    if os.geteuid() != 0:
        return "spacehost does not run as root: volumes are plain folders without a size limit"
    folder.mkdir(parents=True, exist_ok=True)
    if not image.exists() and any(folder.iterdir()):
        return f"{folder} holds files from before size limits: left as a plain folder without a limit"
    try:
        if not image.exists():
            with open(image, "wb") as f:
                f.truncate(max(MIN_BYTES, limit_bytes - limit_bytes % BLOCK))
            _run(*mkfs_argv(image, uid))
        new_size = grow_plan(image.stat().st_size, limit_bytes)
        if not mounted(folder):
            if new_size is not None:  # grown offline: online resize is refused in many containers
                with open(image, "r+b") as f:
                    f.truncate(new_size)
                _run("e2fsck", "-f", "-p", str(image), ok=(0, 1))  # 1: fixed (the lost+found we removed)
                _run("resize2fs", str(image))
            _run("mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noinit_itable", str(image), str(folder))
        elif new_size is not None:
            log.warning("volume %s grows to %d bytes when next mounted (at spacehost's next start)", folder,
                        new_size)
        if limit_bytes < image.stat().st_size:
            log.warning("volume %s stays at %d bytes (above the new limit of %d): file systems do not shrink",
                        folder, image.stat().st_size, limit_bytes)
        with contextlib.suppress(OSError):  # an empty one only: the app sees an empty /data, as on HF
            (folder / "lost+found").rmdir()
    except OSError as e:
        return f"no size limit on {folder}: {e}"
    return None


def bind_dirs(data_dir: Path, volumes: Iterable[tuple[str, str, bool]], limit_bytes: int,
              uid: int) -> tuple[tuple[str, str, bool], ...]:
    """`volumes` as (path relative to `data_dir`: volumes/OWNER/BUCKET[/SUB], mount path, read-only) made ready
    on this machine: each bucket prepared (`prepare`, why not logged) and each folder made for `uid`. Returns
    (host dir, mount path, read-only). Raises ValueError for a path outside volumes/OWNER/BUCKET. Blocking."""
    out = []
    for rel, mount, ro in volumes:
        parts = PurePosixPath(rel).parts
        if len(parts) < 3 or parts[0] != "volumes" or any(p in ("", ".", "..", "/") for p in parts):
            raise ValueError(f"volume path {rel!r} is not under volumes/OWNER/BUCKET")
        if (why := prepare(data_dir.joinpath(*parts[:3]), limit_bytes, uid)) is not None:
            log.warning("volume %s: %s", "/".join(parts[1:3]), why)
        host = data_dir.joinpath(*parts)
        if not host.is_dir():
            host.mkdir(parents=True, mode=0o755)
            with contextlib.suppress(PermissionError):
                os.chown(host, uid, uid)
        out.append((str(host), mount, ro))
    return tuple(out)


def unmount(folder: Path) -> None:
    """Unmount the bucket at `folder` now, its data written out (not lazily: a busy one raises OSError)."""
    if mounted(folder):
        _run("umount", str(folder))


def mount_points(mountinfo: str, root: Path) -> list[Path]:
    """Mount points under `root` in /proc/self/mountinfo text, deepest first (fields: id parent dev root mp)."""
    prefix = str(root).rstrip("/") + "/"
    points = [Path(line.split()[4].replace("\\040", " ")) for line in mountinfo.splitlines() if line.strip()]
    return sorted((p for p in points if str(p).startswith(prefix)), key=lambda p: -len(p.parts))


def unmount_all(root: Path) -> None:
    """Unmount every volume under `root` (lazily where a process still holds one); their loop devices go with
    them (autoclear). Errors are logged, never raised: this runs while spacehost stops."""
    try:
        info = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return
    for point in mount_points(info, root):
        proc = subprocess.run(["umount", "-l", str(point)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            log.warning("could not unmount volume %s: %s", point, proc.stderr.strip())
