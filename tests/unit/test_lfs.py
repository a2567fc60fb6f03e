"""Git LFS decisions (hub/lfs.py): pointers, batch requests and answers, signed URLs, checked writes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from core.errors import BadRequest, PayloadTooLarge
from hub.lfs import (
    URL_TTL_S,
    LfsObject,
    LfsStore,
    Pointer,
    batch_answer,
    parse_objects,
    parse_pointer,
    sign,
    signature_ok,
)

OID = "a" * 64
KEY = b"k" * 32


@pytest.mark.parametrize(("data", "want"), [
    (Pointer(OID, 12).text().encode(), Pointer(OID, 12)),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:xyz\nsize 1\n", None),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:" + OID.encode() + b"\nsize -1\n", None),
    (b"print('not a pointer')\n", None),
    (Pointer(OID, 12).text().encode() + b" " * 1024, None),
], ids=["pointer", "bad-oid", "bad-size", "plain-file", "too-long"])
def test_pointers(data: bytes, want: Pointer | None) -> None:
    assert parse_pointer(data) == want


@pytest.mark.parametrize("body", [
    [], {"operation": "delete", "objects": []}, {"operation": "upload", "transfers": ["tus"], "objects": []},
    {"operation": "upload", "objects": [{"oid": "../../etc", "size": 1}]},
    {"operation": "upload", "objects": [{"oid": OID, "size": "1"}]},
], ids=["not-object", "bad-operation", "no-basic", "path-oid", "string-size"])
def test_malformed_batch_requests_are_refused(body: Any) -> None:
    with pytest.raises(BadRequest):
        parse_objects(body)


def _answer(op: str, stored: dict[str, int], size: int = 10, max_bytes: int = 100) -> dict[str, Any]:
    out = batch_answer(op, [LfsObject(OID, size)], stored, "http://h/spaces/a/b.git/info/lfs/objects", KEY, "a/b",
                       max_bytes, now=1000.0)
    return out["objects"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("op", "stored", "size", "want"), [
    ("upload", {}, 10, "upload"),
    ("upload", {OID: 10}, 10, None),
    ("upload", {OID: 3}, 10, "upload"),  # a short object is replaced
    ("upload", {}, 101, 422),
    ("download", {OID: 10}, 10, "download"),
    ("download", {}, 10, 404),
], ids=["new", "already-stored", "stored-short", "over-limit", "download", "download-missing"])
def test_batch_answer(op: str, stored: dict[str, int], size: int, want: str | int | None) -> None:
    entry = _answer(op, stored, size)
    if isinstance(want, int):
        assert entry["error"]["code"] == want and "actions" not in entry
    elif want is None:
        assert "actions" not in entry and "error" not in entry
    else:
        href = entry["actions"][want]["href"]
        expires, sig = href.split("?expires=")[1].split("&sig=")
        assert href.startswith(f"http://h/spaces/a/b.git/info/lfs/objects/{OID}?")
        assert signature_ok(KEY, "a/b", OID, want, expires, sig, now=1000.0)


def test_signatures_are_bound_to_space_object_operation_and_time() -> None:
    exp = 1000 + URL_TTL_S
    sig = sign(KEY, "a/b", OID, "upload", exp)
    assert signature_ok(KEY, "a/b", OID, "upload", str(exp), sig, now=1000.0)
    assert not signature_ok(KEY, "a/c", OID, "upload", str(exp), sig, now=1000.0)
    assert not signature_ok(KEY, "a/b", "b" * 64, "upload", str(exp), sig, now=1000.0)
    assert not signature_ok(KEY, "a/b", OID, "download", str(exp), sig, now=1000.0)
    assert not signature_ok(KEY, "a/b", OID, "upload", str(exp), sig, now=exp + 1.0)
    assert not signature_ok(b"other", "a/b", OID, "upload", str(exp), sig, now=1000.0)


def test_an_object_appears_only_whole_and_as_named(tmp_path: Path) -> None:
    store = LfsStore(tmp_path / "r.git")
    data = b"weights" * 100
    oid = hashlib.sha256(data).hexdigest()
    w = store.writer(oid, len(data), max_bytes=10_000)
    w.write(data[:10])
    assert store.size(oid) is None
    w.write(data[10:])
    w.commit()
    assert store.size(oid) == len(data) and store.path(oid).read_bytes() == data
    bad = store.writer("b" * 64, len(data), max_bytes=10_000)
    bad.write(data)
    with pytest.raises(BadRequest, match="not object"):
        bad.commit()
    assert store.size("b" * 64) is None and [p.name for p in store.root.rglob("*") if p.is_file()] == [oid]
    with pytest.raises(PayloadTooLarge):
        store.writer(oid, 10_001, max_bytes=10_000)
    with pytest.raises(BadRequest):
        store.path("../../x")
