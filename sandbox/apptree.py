"""A writable copy of a Space's app tree for one instance, as on Hugging Face where `/home/user/app` belongs to
the app: Gradio writes `.gradio/flagged`, `.gradio/cached_examples` and temp files there.

The checkout (the pushed tree, `builder/checkout.py`) is never handed to an app writable. Each instance gets
its own copy, owned by the app's uid: file data is cloned (FICLONE: a reflink, no bytes copied, on btrfs or XFS)
or copied otherwise — never hard-linked, since an app writing through a hard link would change the checkout and
every other instance's tree. The copy is the instance's: it goes with the instance (a restart or redeploy starts
from the pushed tree again).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
from pathlib import Path

FICLONE = 0x40049409  # <linux/fs.h> _IOW(0x94, 9, int)


def writable_copy(src: str | Path, dest: str | Path, uid: int | None) -> Path:
    """Copy the tree `src` to `dest` (which must not exist): directories, regular files (mode kept) and
    symlinks (as links, never followed); anything else is skipped. With `uid`, everything is owned by
    uid:uid (only root can do that). Returns `dest`."""
    src, dest = Path(src), Path(dest)
    dest.mkdir(mode=0o755)
    _own(dest, uid)
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        out = dest if rel == "." else dest / rel
        for name in [*dirnames, *filenames]:
            s, d = os.path.join(dirpath, name), out / name
            st = os.lstat(s)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISDIR(st.st_mode):
                d.mkdir(mode=stat.S_IMODE(st.st_mode) | 0o700)
            elif stat.S_ISREG(st.st_mode):
                clone_file(s, d, stat.S_IMODE(st.st_mode) | 0o600)
            else:
                continue
            _own(d, uid)
        dirnames[:] = [n for n in dirnames if not os.path.islink(os.path.join(dirpath, n))]
    return dest


def clone_file(src: str, dest: str | Path, mode: int) -> None:
    """`dest` (new) with the content of `src`: a reflink where the file system shares extents, else a copy."""
    with open(src, "rb") as fin, open(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
        except OSError:
            _copy_in_kernel(fin.fileno(), fout.fileno(), os.fstat(fin.fileno()).st_size)


def _copy_in_kernel(src: int, dest: int, size: int) -> None:
    """copy_file_range (no bytes through user space; shares extents where the file system can), else a copy."""
    done = 0
    try:
        while done < size and (n := os.copy_file_range(src, dest, size - done)) > 0:
            done += n
    except OSError:
        os.lseek(src, done, os.SEEK_SET)
        os.lseek(dest, done, os.SEEK_SET)
        with open(src, "rb", closefd=False) as fin, open(dest, "wb", closefd=False) as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)


def _own(path: Path, uid: int | None) -> None:
    if uid is not None:
        with contextlib.suppress(FileNotFoundError):
            os.lchown(path, uid, uid)
