"""The app folder is the app's to write, as on Hugging Face: Gradio's flagging and example caching write under
`.gradio/` in /home/user/app; the writes belong to the instance (gone after a restart) and the pushed tree in the
data dir is never changed."""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from pathlib import Path

import pytest
from gradio_client import Client

from tests.e2e.harness import Server

pytestmark = pytest.mark.e2e

APP = """import os

import gradio as gr

open("written-at-start.txt", "w").write("{tag}")


def echo(message, history):
    return "echo: " + message


def listing():
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(".") for f in fs if "__pycache__" not in d)


def note(text):
    with open("notes.txt", "a") as f:
        f.write(text + "\\n")
    return open("notes.txt").read()


with gr.Blocks() as demo:
    gr.ChatInterface(echo, examples=["hello"], cache_examples=True, flagging_mode="manual", api_name="chat")
    box = gr.Textbox()
    out = gr.Textbox()
    logger = gr.CSVLogger()
    logger.setup([box, out], ".gradio/flagged")
    gr.Button("flag").click(lambda a, b: logger.flag([a, b]), [box, out], None, api_name="flag_row")
    gr.Button("note").click(note, box, out, api_name="note")
    gr.Button("ls").click(listing, None, gr.JSON(), api_name="listing")

demo.launch()
"""


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_gradio_app_writes_its_folder_and_the_checkout_stays_as_pushed(server: Server,
                                                                        tmp_path: Path) -> None:
    sid = f"admin/writable-{uuid.uuid4().hex[:6]}"
    server.create_space(sid.split("/")[1])
    assert server.push(sid, {"app.py": APP.format(tag="v1")}, workdir=tmp_path / "w").returncode == 0
    with server.api() as c:
        sha = str(c.get(f"/api/spaces/{sid}").json()["sha"])
    server.wait_stage(sid, {"RUNNING"}, after_sha=sha)
    checkout = server.data_dir / "spaces" / sid / "src" / sha
    pushed = tree_digest(checkout)
    client = Client(server.host(sid), verbose=False)

    files = client.predict(api_name="/listing")
    assert "./written-at-start.txt" in files
    assert any(f.startswith("./.gradio/cached_examples/") for f in files), files  # cache_examples=True
    assert client.predict("hi", api_name="/chat") == "echo: hi"
    client.predict("bad answer", "echo: bad answer", api_name="/flag_row")
    assert client.predict("first", api_name="/note") == "first\n"
    files = client.predict(api_name="/listing")
    assert any(f.startswith("./.gradio/flagged/") and f.endswith(".csv") for f in files), files

    assert tree_digest(checkout) == pushed  # the pushed tree never changes
    assert set(pushed) <= {"app.py", ".complete"}

    # a restart starts from the pushed tree again: the instance's writes are gone
    with server.api() as c:
        c.post(f"/api/spaces/{sid}/restart").raise_for_status()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the new instance may still be coming up
            if "./notes.txt" not in Client(server.host(sid), verbose=False).predict(api_name="/listing"):
                break
        time.sleep(0.5)
    else:
        raise AssertionError(f"notes.txt survived a restart\n{server.log_tail()}")
    assert Client(server.host(sid), verbose=False).predict("again", api_name="/note") == "again\n"
    assert tree_digest(checkout) == pushed
