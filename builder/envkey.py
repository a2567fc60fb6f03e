"""What a requirement line installs, as far as the environment key is concerned: an environment is shared by
every Space whose key is equal, so the key must cover the *content* each line installs, not only its text.

- index requirements (`gradio==6.1`, `six`, extras, markers): the line is the content (the index's);
- local paths (`./pkg`, `-e ./pkg`, `file:pkg`, `name @ ./pkg`, `./dist/x.whl`, `-f ./wheels`): keyed by
  the bytes of that tree inside the checkout (`tree_digest`), so changed bytes build a new environment and
  two Spaces share one only when their trees are byte-identical;
- VCS requirements pinned to a full commit id and URLs with a `#sha256=` hash: the line names the content;
- anything else whose content can change under the same line (`git+…@main`, a plain URL, a path outside the
  checkout): the environment is private to one Space and one commit (`private_to`), never shared.

`tenant_code` says whether the build runs code chosen by the Space rather than fetched from the default index
(local trees, VCS, URLs, other indexes): such builds get their owner's uv cache and an environment for that
owner's Spaces only (see builder/build_sandbox.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

_VCS = re.compile(r"^(?:git|hg|svn|bzr)\+", re.IGNORECASE)
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_DIRECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]*\])?\s*@\s*(\S+)")  # name @ url
_COMMIT = re.compile(r"@([0-9a-f]{40}|[0-9a-f]{64})(?:#|$)")
_HASHED = re.compile(r"#(?:.*&)?sha256=[0-9a-f]{64}|--hash[= ]sha256:[0-9a-f]{64}", re.IGNORECASE)
_ARCHIVE = (".whl", ".tar.gz", ".tgz", ".zip", ".tar.bz2")
_EDITABLE = re.compile(r"^(?:-e|--editable)(?:\s+|=)(\S+)")
_FIND_LINKS = re.compile(r"^(?:-f|--find-links)(?:\s+|=)(\S+)")
OUTSIDE = "outside"


class Kind(str, Enum):
    INDEX = "index"  # a name from the configured index
    OPTION = "option"  # a pip option line (another index, --pre, …): the line is the content
    LOCAL = "local"  # a tree or archive inside the checkout: keyed by its bytes
    PINNED = "pinned"  # VCS at a full commit id, URL with a sha256: the line is the content
    PRIVATE = "private"  # content may change under the same line: never shared


@dataclass(frozen=True)
class Source:
    kind: Kind
    path: str | None = None  # LOCAL: the path relative to the checkout root, normalised

    @property
    def tenant_code(self) -> bool:
        return self.kind is not Kind.INDEX


def classify(line: str) -> Source:
    """What one logical requirement line installs. Pure."""
    target = line
    for option in (_EDITABLE, _FIND_LINKS):
        m = option.match(line)
        if m:
            target = m.group(1)
            if option is _FIND_LINKS and _URL.match(target):
                return Source(Kind.OPTION)  # another index, like --extra-index-url
            break
    else:
        if line.startswith("-"):
            return Source(Kind.OPTION)
    direct = _DIRECT.match(target)
    if direct:
        target = direct.group(1)
    if _VCS.match(target):
        return Source(Kind.PINNED if _COMMIT.search(target) else Kind.PRIVATE)
    if target.lower().startswith("file:"):
        return _local(re.sub(r"^file:(//localhost)?(//)?", "", target, flags=re.IGNORECASE))
    if _URL.match(target):
        return Source(Kind.PINNED if _HASHED.search(line) else Kind.PRIVATE)
    if _is_path(target) or direct or target is not line:
        return _local(target)
    return Source(Kind.INDEX)


def _is_path(target: str) -> bool:
    head = re.split(r"[\[;<>=!~\s]", target, maxsplit=1)[0]
    return head.startswith((".", "/", "~")) or "/" in head or head.lower().endswith(_ARCHIVE)


def _local(target: str) -> Source:
    path = re.split(r"[#\[;\s]", target, maxsplit=1)[0]
    norm = os.path.normpath(path)
    if os.path.isabs(norm) or norm.startswith(("..", "~")):
        return Source(Kind.PRIVATE)  # outside the checkout: nothing of it is in the key
    return Source(Kind.LOCAL, norm)


def tree_digest(root: Path, rel: str) -> str:
    """sha256 of the tree (or file) at `rel` under `root`: every entry's path, type, executable bit and bytes
    (symlinks by their target text, never followed), in sorted order; `.git` skipped. "missing" if absent,
    "outside" if the path leads out of the checkout through a symlink (nothing of the host is read)."""
    top = root / rel
    h = hashlib.sha256()
    try:
        st = top.lstat()
    except OSError:
        return "missing"
    if not top.resolve().is_relative_to(root.resolve()):
        return OUTSIDE
    for name, path, mode in _entries(top, st):
        h.update(name.encode() + b"\0")
        if stat.S_ISLNK(mode):
            h.update(b"L" + os.readlink(path).encode() + b"\0")
        elif stat.S_ISREG(mode):
            h.update(b"X" if mode & 0o111 else b"F")
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            h.update(b"\0")
        else:
            h.update(b"D\0")
    return h.hexdigest()[:32]


def _entries(top: Path, st: os.stat_result) -> Iterable[tuple[str, Path, int]]:
    if not stat.S_ISDIR(st.st_mode):
        yield ".", top, st.st_mode
        return
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = base / name
            yield path.relative_to(top).as_posix(), path, path.lstat().st_mode


@dataclass(frozen=True)
class ContentInputs:
    """The key inputs beyond the requirement lines, and whether the build runs the Space's own code."""

    local: tuple[tuple[str, str], ...] = ()  # (path in the checkout, tree_digest)
    private: bool = False
    tenant_code: bool = False


def content_inputs(lines: Iterable[str], root: Path) -> ContentInputs:
    """Classify `lines` and digest their local trees under the checkout `root`."""
    sources = [classify(line) for line in lines]
    local = sorted({(s.path, tree_digest(root, s.path)) for s in sources if s.kind is Kind.LOCAL and s.path})
    private = any(s.kind is Kind.PRIVATE for s in sources) or any(d == OUTSIDE for _, d in local)
    return ContentInputs(local=tuple(local), private=private,
                         tenant_code=any(s.tenant_code for s in sources))
