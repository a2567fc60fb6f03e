"""Materialise the tree of one commit of a bare repository as plain files a sandboxed uid 1000 can read.

`git archive` streams the tree (no index, no work tree, nothing written into the bare repository); Python's
`tarfile` "data" filter extracts it, so absolute paths, `..` and links that lead out of the checkout are
dropped rather than followed. Git LFS pointers are replaced by their objects when the repository holds them
(`lfs/objects/`), and left as pointers otherwise.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

from core.errors import BuildFailed

LFS_POINTER = b"version https://git-lfs.github.com/spec/v1\n"
_LFS_POINTER_MAX = 1024


def checkout(bare_repo: Path, sha: str, dest: Path) -> Path:
    """Write the tree of `sha` into `dest` (created; must not exist or be empty). Files 0644 (0755 if
    executable), directories 0755. Raises BuildFailed if git cannot read the commit."""
    dest.mkdir(parents=True, exist_ok=True)
    # LFS filters off: git-lfs would try to download missing objects and fail the whole archive.
    no_lfs = ["-c", "filter.lfs.smudge=", "-c", "filter.lfs.process=", "-c", "filter.lfs.required=false"]
    cmd = ["git", *no_lfs, "--git-dir", str(bare_repo), "archive", "--format=tar", sha]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if member.name == "pax_global_header" or member.type == tarfile.XGLTYPE:
                    continue
                try:
                    safe = tarfile.data_filter(member, str(dest))
                except tarfile.FilterError:
                    continue  # an absolute path or a link leading out of the checkout: not extracted
                tar.extract(safe, dest, filter="fully_trusted")
    except tarfile.TarError as e:
        proc.kill()
        proc.wait()
        raise BuildFailed(f"could not read commit {sha[:12]}: {e}") from None
    err = proc.stderr.read().decode(errors="replace").strip()
    if proc.wait() != 0:
        raise BuildFailed(f"could not read commit {sha[:12]}: {err or 'git archive failed'}")
    _resolve_lfs(bare_repo, dest)
    make_world_readable(dest)
    return dest


def _resolve_lfs(bare_repo: Path, dest: Path) -> None:
    objects = bare_repo / "lfs" / "objects"
    if not objects.is_dir():
        return
    for path in dest.rglob("*"):
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _LFS_POINTER_MAX:
            continue
        oid = lfs_oid(path.read_bytes())
        if oid is None:
            continue
        obj = objects / oid[:2] / oid[2:4] / oid
        if obj.is_file():
            mode = path.stat().st_mode
            path.unlink()
            shutil.copyfile(obj, path)
            path.chmod(stat.S_IMODE(mode))


def lfs_oid(data: bytes) -> str | None:
    """The sha256 oid of a Git LFS pointer file's content, or None if it is not one."""
    if not data.startswith(LFS_POINTER):
        return None
    for line in data.decode("ascii", errors="replace").splitlines():
        key, _, value = line.partition(" ")
        if key == "oid" and value.startswith("sha256:") and len(value) == 71:
            return value[7:]
    return None


def make_world_readable(root: Path) -> None:
    """Directories 0755; files 0644, or 0755 where any execute bit is set. Symlinks are left alone."""
    os.chmod(root, 0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
        for f in filenames:
            p = os.path.join(dirpath, f)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                want = 0o755 if st.st_mode & 0o111 else 0o644
                if stat.S_IMODE(st.st_mode) != want:
                    os.chmod(p, want)
