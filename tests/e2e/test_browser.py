"""Issue 6 in a real browser (Debian's Chromium driven by Playwright): cross-site embedding of Gradio and
Streamlit Spaces, `disable_embedding`, private Spaces, wake from sleep. Screenshots go to test-artifacts/."""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.harness import ROOT, Server, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
ARTIFACTS = ROOT / "test-artifacts"

GRADIO = """import gradio as gr

def greet(name):
    return "Hello " + name + "!"

gr.Interface(fn=greet, inputs=gr.Textbox(label="name"), outputs=gr.Textbox(label="greeting")).launch()
"""
STREAMLIT = """import streamlit as st
st.title("Streamlit in a frame")
n = st.slider("n", 0, 10, 3)
st.write(f"square is {n * n}")
"""


@pytest.fixture(scope="module")
def third_party(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Another origin (its own port on 127.0.0.1) that serves pages embedding Spaces."""
    root = tmp_path_factory.mktemp("third-party")
    port = free_port()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(*a, directory=str(root), **k)  # type: ignore[arg-type]

        def log_message(self, *_: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}", root
    httpd.shutdown()


def app_origin(server: Server, sid: str) -> str:
    return f"http://{sid.replace('/', '-').lower()}.localhost:{server.port}"


def embed_page(third_party: tuple[str, Path], server: Server, sid: str) -> str:
    origin, root = third_party
    name = f"{uuid.uuid4().hex[:8]}.html"
    (root / name).write_text(f"<!doctype html><h1>A blog post</h1><iframe id=space src='{app_origin(server, sid)}/' "
                             "width=900 height=600 frameborder=0></iframe>")
    return f"{origin}/{name}"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def deploy(server: Server, prefix: str, files: dict[str, str], sdk: str = "gradio", private: bool = False) -> str:
    sid = f"admin/{prefix}-{uuid.uuid4().hex[:6]}"
    assert server.create_space(sid.split("/")[1], sdk=sdk, private=private).status_code == 200
    assert server.push(sid, files).returncode == 0
    assert server.wait_stage(sid)["stage"] == "RUNNING"
    return sid


def sign_in(page: Page, server: Server, token: str) -> None:
    page.goto(f"{server.url.replace('127.0.0.1', 'localhost')}/login")
    page.fill("input[name=token]", token)
    page.click("button")


def test_gradio_space_in_a_cross_site_iframe_answers_a_click(server: Server, browser: Browser,
                                                             third_party: tuple[str, Path]) -> None:
    sid = deploy(server, "embed-gradio", {"app.py": GRADIO})
    page = browser.new_page()
    page.goto(embed_page(third_party, server, sid))
    frame = page.frame_locator("#space")
    frame.get_by_label("name").fill("Ada")
    frame.get_by_role("button", name="Submit").click()
    expect(frame.get_by_label("greeting")).to_have_value("Hello Ada!", timeout=30_000)
    shot(page, "gradio-embedded-cross-site")


def test_streamlit_space_in_a_cross_site_iframe_updates_over_its_websocket(
        server: Server, browser: Browser, third_party: tuple[str, Path]) -> None:
    sid = deploy(server, "embed-streamlit", {"app.py": STREAMLIT, "README.md": "---\nsdk: streamlit\n---\n"},
                 sdk="streamlit")
    page = browser.new_page()
    page.goto(embed_page(third_party, server, sid))
    frame = page.frame_locator("#space")
    expect(frame.get_by_text("Streamlit in a frame")).to_be_visible(timeout=30_000)
    expect(frame.get_by_text("square is 9")).to_be_visible(timeout=30_000)
    slider = frame.get_by_role("slider")
    slider.focus()
    slider.press("ArrowRight")
    expect(frame.get_by_text("square is 16")).to_be_visible(timeout=30_000)
    shot(page, "streamlit-embedded-cross-site")


def test_disable_embedding_refuses_third_party_frames_but_not_the_space_page(
        server: Server, browser: Browser, third_party: tuple[str, Path]) -> None:
    sid = deploy(server, "noembed", {"README.md": "---\nsdk: static\ndisable_embedding: true\n---\n",
                                     "index.html": "<h1 id=ok>only on my page</h1>"}, sdk="static")
    page = browser.new_page()
    page.goto(embed_page(third_party, server, sid))
    page.wait_for_timeout(1500)
    frame = page.frame_locator("#space")
    expect(frame.locator("#ok")).to_have_count(0)
    shot(page, "disable-embedding-third-party")
    own = browser.new_page()
    own.goto(f"http://localhost:{server.port}/spaces/{sid}")
    expect(own.frame_locator("iframe.app").locator("#ok")).to_have_text("only on my page", timeout=15_000)
    shot(own, "disable-embedding-space-page")


def test_private_space_shown_to_its_owner_and_404_to_a_stranger(server: Server, browser: Browser) -> None:
    sid = deploy(server, "secret-garden", {"index.html": "<h1 id=ok>private content</h1>"}, sdk="static",
                 private=True)
    owner = browser.new_context().new_page()
    sign_in(owner, server, server.token)
    owner.goto(f"http://localhost:{server.port}/spaces/{sid}")
    expect(owner.frame_locator("iframe.app").locator("#ok")).to_have_text("private content", timeout=15_000)
    shot(owner, "private-space-owner")
    stranger = browser.new_context().new_page()
    assert stranger.goto(f"http://localhost:{server.port}/spaces/{sid}").status == 404  # type: ignore[union-attr]
    assert stranger.goto(app_origin(server, sid) + "/").status == 404  # type: ignore[union-attr]
    assert "private content" not in stranger.content()
    shot(stranger, "private-space-stranger")


def test_sleeping_space_wakes_from_its_page(server: Server, browser: Browser) -> None:
    sid = deploy(server, "sleepy", {"app.py": GRADIO})
    with server.api() as c:
        assert c.post(f"/api/spaces/{sid}/sleeptime", json={"seconds": 4}).status_code == 200
    server.wait_stage(sid, {"SLEEPING"}, timeout=120)
    with server.api() as c:  # asleep now; once woken it must not fall asleep again while a busy CI renders it
        assert c.post(f"/api/spaces/{sid}/sleeptime", json={"seconds": -1}).status_code == 200
    assert server.runtime(sid)["stage"] == "SLEEPING"
    page = browser.new_page()
    page.goto(f"http://localhost:{server.port}/spaces/{sid}")
    frame = page.frame_locator("iframe.app")
    expect(frame.get_by_label("name")).to_be_visible(timeout=120_000)  # a wake, then Gradio's page
    shot(page, "woken-from-sleep")
