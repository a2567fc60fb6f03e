"""Issue 14: real apps that nobody on this project wrote, pushed unchanged, serve under the sandbox.

tests/e2e/corpus/<name>/ holds each app as upstream has it (entry file renamed app.py; SOURCE says where it came
from, at which commit). The test pushes each one to one real `spacehost up` with a README that names its SDK —
what every Space has — waits for RUNNING and checks it through the clients its users have (tests/e2e/
corpus_checks.py). Apps go up in batches, a batch deleted before the next, so a 2-core machine never runs them
all at once; apps with equal requirements share one environment, so most pushes are code-only starts."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import corpus_checks as c
from tests.e2e.harness import Server, free_port

# the module keeps its order: the apps deploy in batches of BATCH, each batch retired when the next one comes;
# shuffled, nearly every case would deploy its batch again (the cases are independent, the cost is not)
pytestmark = [pytest.mark.e2e, pytest.mark.random_order(disabled=True)]
BATCH = 6


@dataclass(frozen=True)
class App:
    name: str  # its folder under tests/e2e/corpus
    check: c.Check
    what: str  # what the check shows, for the report
    sdk: str = "gradio"


def replies(*texts: str) -> c.Check:
    return c.st_chat(lambda page: any(t in page for t in texts))


APPS = [
    App("hello_world", c.predicts("/predict", ("Ada",), "Hello Ada!"), "Interface: /predict"),
    App("chatinterface_streaming_echo", c.streaming_chat, "ChatInterface, a generator streams one message a yield"),
    App("chatinterface_save_history", c.multimodal_chat, "multimodal ChatInterface: two uploaded files"),
    App("upload_and_download", c.upload_and_download, "UploadButton in, DownloadButton out: same bytes back"),
    App("render_split_simple", c.render_split, "gr.render: one Textbox per letter (queue protocol)"),
    App("server_app", c.server_app, "gr.Server: /add, /multiply through gradio_client, its own HTML at /"),
    App("stock_forecast", c.stock_forecast, "matplotlib gr.Plot: a PNG"),
    App("native_plots", c.native_plots, "multi-file app (data.py + 3 modules): LinePlot/ScatterPlot/BarPlot data"),
    App("sepia_filter", c.sepia, "gr.Image upload -> numpy sepia image"),
    App("st_chat_simple", replies("Hello there!", "Hi, human!", "Do you need help?"),
        "st.chat_input + st.write_stream over the WebSocket", "streamlit"),
    App("st_mpa_hello", c.st_mpa_hello, "multipage (pages/), opencv requirement, utils.py", "streamlit"),
    App("calculator", c.calculator, "Interface with examples; gr.Error reaches the client"),
    App("chatbot_streaming", c.chatbot_streaming, "Chatbot: .submit then a streaming .then"),
    App("calculator_blocks_cached", c.cached_calculator, "cache_examples=True at start, then /calculator"),
    App("interface_state", c.interface_state, "gr.State kept per session across calls"),
    App("hangman", c.hangman, "gr.State + dict outputs; a new session starts afresh"),
    App("count_generator", c.count_generator, "generator: 0, 1, 2 streamed"),
    App("zip_files", c.zip_files, "gr.File multiple in, a zip written in the app folder out"),
    App("image_mod", c.image_mod, "PIL gr.Image rotated 45 degrees"),
    App("todo_list", c.todo_list, "gr.render over gr.State (queue protocol, one session)"),
    App("st_custom_navigation", c.st_custom_navigation, "pages/ + menu.py, st.switch_page redirect", "streamlit"),
    App("multipage", c.multipage, "Blocks.route pages: /greet, /increment, /decrement, GET /up"),
    App("custom_css", c.custom_css, "css_paths file reaches the page config"),
    App("blocks_js_load", c.js_load, "launch(js=...) in the config; /welcome"),
    App("blocks_js_methods", c.js_methods, "js= event handlers in the config; /sentence_maker"),
    App("tax_calculator", c.tax_calculator, "gr.Dataframe input, live Interface"),
    App("gif_maker", c.gif_maker, "gr.Gallery of the app's images/ -> a 3-frame GIF"),
    App("timer_simple", c.timer, "gr.Timer tick endpoint"),
    App("fake_diffusion", c.fake_diffusion, "generator of images: a step, then the final image"),
    App("blocks_flipper", c.flipper, "Tabs: /flip_text, /flip_image"),
    App("blocks_flag", c.blocks_flag, "gr.CSVLogger set up in the app folder; /sepia"),
    App("st_chat_echo", replies("Echo: ping from the corpus"), "st.chat_input echoed, session_state", "streamlit"),
]


def space_files(app: App) -> dict[str, str | bytes]:
    """The app's files as upstream has them, plus the README.md front matter every Space has."""
    root = c.CORPUS / app.name
    files: dict[str, str | bytes] = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                                     if p.is_file() and p.name != "SOURCE"}
    files["README.md"] = f"---\ntitle: {app.name}\nsdk: {app.sdk}\napp_file: app.py\n---\n"
    return files


class Corpus:
    """Deploys the batch of an app when its first test asks, deleting the batch before."""

    def __init__(self, server: Server, workdir: Path, apps: list[App]) -> None:
        self.server = server
        self.workdir = workdir
        self.batches = [apps[i:i + BATCH] for i in range(0, len(apps), BATCH)]  # of the apps selected to run
        self.live: dict[str, dict[str, object]] = {}  # app name → its runtime once terminal
        self.ids: dict[str, str] = {}
        self.timings: dict[str, float] = {}

    def runtime(self, app: App) -> dict[str, object]:
        if app.name not in self.live:
            batch = next(b for b in self.batches if app in b)
            self._retire()
            self._deploy(batch)
        return self.live[app.name]

    def _deploy(self, batch: list[App]) -> None:
        t0 = time.monotonic()
        tag = secrets.token_hex(2)
        for app in batch:
            sid = f"admin/{app.name.replace('_', '-')}-{tag}"
            assert self.server.create_space(sid.split("/")[1], sdk=app.sdk).status_code == 200
            push = self.server.push(sid, space_files(app), workdir=self.workdir / sid.split("/")[1],
                                    message=f"{app.name}, unchanged")
            assert push.returncode == 0, push.stderr
            self.ids[app.name] = sid
        for app in batch:
            self.live[app.name] = self.server.wait_stage(self.ids[app.name], timeout=420)
            self.timings[app.name] = time.monotonic() - t0

    def _retire(self) -> None:
        with self.server.api() as api:
            for name in list(self.live):
                owner, repo = self.ids[name].split("/")
                r = api.request("DELETE", "/api/repos/delete",
                                json={"type": "space", "organization": owner, "name": repo})
                assert r.status_code == 200, r.text
        self.live.clear()


@pytest.fixture(scope="module")
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    params = [getattr(getattr(item, "callspec", None), "params", {}) for item in request.session.items]
    chosen = {p["app"].name for p in params if "app" in p}  # only the apps this run selected go up
    srv = Server(tmp_path_factory.mktemp("corpus"), free_port(), "hf_admin_" + secrets.token_hex(8))
    srv.start()
    try:
        yield Corpus(srv, tmp_path_factory.mktemp("pushes"), [a for a in APPS if a.name in chosen])
    finally:
        srv.close()


def test_every_app_has_its_source_recorded() -> None:
    folders = sorted(p.name for p in c.CORPUS.iterdir() if p.is_dir())
    assert folders == sorted(a.name for a in APPS)
    for name in folders:
        source = (c.CORPUS / name / "SOURCE").read_text()
        assert "repo: https://github.com/" in source and "path: " in source, name
        assert any(len(w) == 40 for w in source.split()), f"{name}: no commit sha in SOURCE"
        assert (c.CORPUS / name / "app.py").is_file()
    assert "Apache License" in (c.CORPUS / "NOTICE").read_text()


@pytest.mark.parametrize("app", APPS, ids=[a.name for a in APPS])
def test_app_serves_unchanged(corpus: Corpus, app: App, tmp_path: Path) -> None:
    rt = corpus.runtime(app)
    assert rt["stage"] == "RUNNING", f"{app.name}: {rt}\n{corpus.server.build_log(corpus.ids[app.name])[-3000:]}"
    app.check(corpus.server.host(corpus.ids[app.name]), tmp_path)
