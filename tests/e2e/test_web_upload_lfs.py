"""Issue 15: a file dropped on the upload page that is above the hub's LFS threshold goes through Git LFS, as
huggingface_hub sends it (preupload → the LFS batch API → PUT to the signed URL → a commit naming it by oid),
in a real browser (Debian's Chromium driven by Playwright) against a real `spacehost up`; smaller files of the
same drop stay inline. The Files tab and the tree API show it as LFS, `resolve` gives back the exact bytes."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, FilePayload, expect

from tests.e2e.harness import Server, free_port
from tests.e2e.test_lfs import objects_of
from tests.e2e.test_web_ui import hub, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
THRESHOLD = 1 << 20


@pytest.fixture(scope="module")
def small_threshold_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server sending files above 1 MiB to LFS (the default threshold, 256 MiB, is too much for a browser test)."""
    srv = Server(tmp_path_factory.mktemp("weblfs"), free_port(), "hf_admin_" + secrets.token_hex(8),
                 env={"SPACEHOST_LFS_THRESHOLD_BYTES": str(THRESHOLD)})
    srv.start()
    yield srv
    srv.close()


def test_browser_upload_above_the_threshold_goes_through_lfs(small_threshold_server: Server, browser: Browser) -> None:
    server = small_threshold_server
    name = f"up-{uuid.uuid4().hex[:6]}"
    sid = f"admin/{name}"
    assert server.create_space(name, "static").status_code == 200
    big = os.urandom(THRESHOLD + 123_457)
    oid = hashlib.sha256(big).hexdigest()
    page = sign_in(browser, server, server.token)
    for folder in ("", "copy"):  # the second time, the Space holds the object: the batch asks for no upload
        page.goto(f"{hub(server)}/spaces/{sid}/upload/main")
        page.locator("#files").set_input_files([
            FilePayload(name="model.bin", mimeType="application/octet-stream", buffer=big),
            FilePayload(name="notes.txt", mimeType="text/plain", buffer=b"small, stays inline\n")])
        page.get_by_label("Into folder (optional)").fill(folder)
        page.get_by_label("Commit message").fill(f"Add weights {folder or 'at the root'}")
        page.get_by_role("button", name="Commit upload").click()
        expect(page).to_have_url(f"{hub(server)}/spaces/{sid}/tree/main", timeout=30_000)

    row = page.locator("#files tr", has_text="model.bin")
    expect(row).to_contain_text("LFS")
    expect(row).to_contain_text(str(len(big)))
    expect(page.locator("#files tr", has_text="notes.txt")).not_to_contain_text("LFS")

    assert [p.name for p in objects_of(server, sid)] == [oid]  # two paths, one object
    repo = server.data_dir / "repos" / f"{sid}.git"
    for path in ("model.bin", "copy/model.bin"):
        pointer = subprocess.run(["git", "--git-dir", str(repo), "show", f"main:{path}"], capture_output=True,
                                 check=True).stdout
        assert pointer.startswith(b"version https://git-lfs.github.com/spec/v1") and oid.encode() in pointer
    with server.api() as c:
        tree = {e["path"]: e for e in c.get(f"/api/spaces/{sid}/tree/main", params={"recursive": "true"}).json()}
        assert tree["model.bin"]["lfs"] == {"oid": oid, "size": len(big), "pointerSize": len(pointer)}
        assert "lfs" not in tree["notes.txt"] and tree["notes.txt"]["size"] == 20
        served = c.get(f"/spaces/{sid}/resolve/main/model.bin")
        assert served.status_code == 200 and served.content == big
        assert c.get(f"/spaces/{sid}/resolve/main/copy/notes.txt").content == b"small, stays inline\n"

    # The plain-JS SHA-256 (for pages that are not a secure context) agrees with Web Crypto and hashlib.
    hashes = page.evaluate("""async url => {
        const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
        return [await window.spacehost.sha256hex(bytes, true), await window.spacehost.sha256hex(bytes, false)];
    }""", f"/spaces/{sid}/resolve/main/model.bin")
    assert hashes == [oid, oid]

    # The batch API takes the browser's session only from the hub's own pages: a forged one is refused.
    session = {c["name"]: c["value"] for c in page.context.cookies()}
    batch = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": "a" * 64, "size": 5}]}
    for origin in ("http://evil.example", None):
        r = httpx.post(f"{server.url}/spaces/{sid}.git/info/lfs/objects/batch", json=batch, cookies=session,
                       headers={"Content-Type": "application/vnd.git-lfs+json",
                                **({"Origin": origin} if origin else {})})
        assert r.status_code == 403 and "cross-site" in r.text, (origin, r.status_code, r.text)
    page.context.close()
