"""Static Spaces: map a request path to a file under the Space's root, safely. Pure path logic plus one stat;
the server does the reading."""

from __future__ import annotations

import mimetypes
import os
from dataclasses import dataclass
from urllib.parse import unquote


@dataclass(frozen=True)
class StaticFile:
    path: str
    size: int
    content_type: str
    etag: str


def resolve(root: str, url_path: str, index: str = "index.html") -> StaticFile | None:
    """The file `url_path` names under `root`, or None. Refuses `..` segments, NUL bytes, backslashes and any
    file whose real path (after symlinks) leaves `root`; a directory serves its `index`."""
    path = unquote(url_path.split("?", 1)[0].split("#", 1)[0])
    if "\x00" in path or "\\" in path:
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None
    real_root = os.path.realpath(root)
    full = os.path.realpath(os.path.join(real_root, *parts))
    if full != real_root and not full.startswith(real_root + os.sep):
        return None
    if os.path.isdir(full):
        full = os.path.realpath(os.path.join(full, index))
        if not full.startswith(real_root + os.sep):
            return None
    try:
        st = os.stat(full)
    except OSError:
        return None
    if not os.path.isfile(full):
        return None
    ctype = mimetypes.guess_type(full)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/javascript", "application/json", "image/svg+xml"):
        ctype += "; charset=utf-8"
    return StaticFile(full, st.st_size, ctype, f'"{st.st_mtime_ns:x}-{st.st_size:x}"')


def not_modified(file: StaticFile, if_none_match: str | None) -> bool:
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or file.etag in tags
