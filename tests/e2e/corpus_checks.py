"""What each app of tests/e2e/corpus must do when it serves: one check per app, through the clients its users
have (`gradio_client`, Gradio's own queue protocol for what the client does not show — `gr.render` — the
page's `/config`, a Streamlit session over its WebSocket). A check raises AssertionError when the app is broken.

Every check takes the app's URL and a scratch folder for inputs and downloads."""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

CORPUS = Path(__file__).parent / "corpus"
Check = Callable[[str, Path], None]


# ---- tools --------------------------------------------------------------------------------------------------

def client(host: str, tmp: Path) -> Client:
    return Client(host, verbose=False, download_files=str(tmp / "downloads"))


def png(tmp: Path, name: str, color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> str:
    path = tmp / name
    Image.new("RGB", size, color).save(path)
    return str(path)


def near(pixel: object, rgb: tuple[int, int, int], tol: int = 12) -> bool:
    """Whether `pixel` is `rgb` give or take lossy encoding (Gradio sends images as WebP)."""
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel, rgb, strict=True))  # type: ignore[call-overload]


def config(host: str) -> dict[str, Any]:
    r = httpx.get(host + "/config", timeout=20)
    r.raise_for_status()
    return r.json()  # type: ignore[no-any-return]


def components_of(cfg: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [c for c in cfg["components"] if c["type"] == kind]


class QueueSession:
    """One browser session of a Gradio app speaking its queue protocol (`queue/join`, then the SSE stream of
    `queue/data`), as the page does: state lives on the server under the session hash."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.session_hash = uuid.uuid4().hex
        self.cfg = config(host)

    def fn_index(self, *, api_name: str | None = None, output_of: int | None = None) -> int:
        for dep in self.cfg["dependencies"]:
            if (api_name is not None and dep.get("api_name") == api_name) or (
                    output_of is not None and dep.get("render_id") is not None and dep["inputs"] == [output_of]):
                return int(dep["id"])
        raise AssertionError(f"no event {api_name or output_of} in {[d.get('api_name') for d in self.cfg['dependencies']]}")

    def component_id(self, kind: str, **props: object) -> int:
        for c in components_of(self.cfg, kind):
            if all(c["props"].get(k) == v for k, v in props.items()):
                return int(c["id"])
        raise AssertionError(f"no {kind} with {props}")

    def call(self, fn_index: int, data: list[Any]) -> dict[str, Any]:
        """The `output` of the event's `process_completed` message."""
        with httpx.Client(base_url=self.host, timeout=30) as c:
            join = c.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "event_data": None,
                                                          "session_hash": self.session_hash, "trigger_id": None})
            join.raise_for_status()
            with c.stream("GET", "/gradio_api/queue/data", params={"session_hash": self.session_hash}) as stream:
                for line in stream.iter_lines():
                    if line.startswith("data:"):
                        msg = json.loads(line[5:])
                        if msg.get("msg") == "process_completed":
                            assert msg.get("success", True), msg
                            return msg["output"]  # type: ignore[no-any-return]
        raise AssertionError("the queue stream ended without process_completed")


def rendered(output: dict[str, Any], kind: str) -> list[Any]:
    """The `value` props of the components of `kind` that a `gr.render` event produced."""
    return [c["props"].get("value") for c in output["render_config"]["components"] if c["type"] == kind]


# ---- gradio checks ------------------------------------------------------------------------------------------

def predicts(api_name: str, args: tuple[Any, ...], expected: Any) -> Check:
    def check(host: str, tmp: Path) -> None:
        assert client(host, tmp).predict(*args, api_name=api_name) == expected
    return check


def calculator(host: str, tmp: Path) -> None:
    c = client(host, tmp)
    assert c.predict(45, "add", 3, api_name="/predict") == 48
    assert c.predict(144, "multiply", 2.5, api_name="/predict") == 360
    with pytest.raises(AppError, match="Cannot divide by zero!"):  # the app's gr.Error, as the client sees it
        c.predict(1, "divide", 0, api_name="/predict")


def streaming_chat(host: str, tmp: Path) -> None:
    job = client(host, tmp).submit("hey", api_name="/slow_echo")
    assert job.result(timeout=30) == "You typed: hey"
    assert job.outputs() == ["You typed: h", "You typed: he", "You typed: hey"]  # streamed, one per yield


def multimodal_chat(host: str, tmp: Path) -> None:
    files = [handle_file(png(tmp, "a.png", (255, 0, 0))), handle_file(png(tmp, "b.png", (0, 0, 255)))]
    out = client(host, tmp).predict({"text": "hi", "files": files}, api_name="/echo_multimodal")
    assert out == "You wrote: 'hi' and uploaded: 2 files"


def chatbot_streaming(host: str, tmp: Path) -> None:
    c = client(host, tmp)
    cleared, history = c.predict("hello", [], api_name="/user")
    assert cleared == "" and history[-1]["role"] == "user" and "hello" in json.dumps(history[-1]["content"])
    job = c.submit(history, api_name="/bot")
    final = job.result(timeout=30)
    assert final[-1]["role"] == "assistant"
    reply = final[-1]["content"]
    text = reply if isinstance(reply, str) else json.dumps(reply)
    assert any(r in text for r in ("How are you?", "I love you", "I'm very hungry")), final
    assert len(job.outputs()) > 5  # one update per character


def cached_calculator(host: str, tmp: Path) -> None:
    assert client(host, tmp).predict(4, "divide", 2, api_name="/calculator") == 2


def interface_state(host: str, tmp: Path) -> None:
    c = client(host, tmp)  # one session: gr.State lives on the server under its session hash
    first = c.predict("one", api_name="/predict")
    second = c.predict("two", api_name="/predict")
    assert first == {"Current messages": "one", "Previous messages": []}
    assert second == {"Current messages": "two", "Previous messages": ["one"]}


def hangman(host: str, tmp: Path) -> None:
    c = client(host, tmp)
    assert c.predict("g", api_name="/guess_letter") == ("g", "g_____")
    assert c.predict("o", api_name="/guess_letter") == ("g, o", "g____o")
    assert client(host, tmp).predict("a", api_name="/guess_letter") == ("a", "__a___")  # a new session


def count_generator(host: str, tmp: Path) -> None:
    c = client(host, tmp)
    job = c.submit(3, api_name="/count")
    job.result(timeout=30)
    assert [str(x) for x in job.outputs()] == ["0", "1", "2"]
    assert c.predict(3, api_name="/show") == "[0, 1, 2]"


def upload_and_download(host: str, tmp: Path) -> None:
    src = tmp / "notes.txt"
    src.write_bytes(b"uploaded through the proxy\n" * 40_000)  # ~1 MB: streamed by the proxy's fast lane
    hidden, download = client(host, tmp).predict(handle_file(str(src)), api_name="/upload_file")
    assert hidden["visible"] is False and download["label"] == "Download notes.txt"
    download = download["value"]  # the client fetched the file the DownloadButton serves
    assert Path(download).name == "notes.txt" and Path(download).read_bytes() == src.read_bytes()


def zip_files(host: str, tmp: Path) -> None:
    a, b = tmp / "a.csv", tmp / "b.json"
    a.write_text("x,y\n1,2\n")
    b.write_text('{"k": 1}')
    out = client(host, tmp).predict([handle_file(str(a)), handle_file(str(b))], api_name="/predict")
    with zipfile.ZipFile(out) as z:
        assert sorted(z.namelist()) == ["a.csv", "b.json"] and z.read("a.csv") == a.read_bytes()


def image_mod(host: str, tmp: Path) -> None:
    out = Image.open(client(host, tmp).predict(handle_file(png(tmp, "w.png", (255, 255, 255))),
                                              api_name="/predict")).convert("RGB")
    assert out.size == (64, 48)
    assert near(out.getpixel((32, 24)), (255, 255, 255)) and near(out.getpixel((0, 0)), (0, 0, 0))  # rotated 45°


def render_split(host: str, tmp: Path) -> None:
    s = QueueSession(host)
    event = s.fn_index(output_of=s.component_id("textbox", label="input"))
    assert rendered(s.call(event, ["abc"]), "textbox") == ["a", "b", "c"]
    assert rendered(s.call(event, [""]), "markdown") == ["## No Input Provided"]


def todo_list(host: str, tmp: Path) -> None:
    s = QueueSession(host)
    add = s.fn_index(api_name="add_task")
    state = s.component_id("state")
    assert s.call(add, [None, "buy milk"])["data"][1] == ""  # the textbox is cleared; the task is in gr.State
    out = s.call(s.fn_index(output_of=state), [None])
    assert "### Incomplete Tasks (1)" in rendered(out, "markdown") and "buy milk" in rendered(out, "textbox")


def multipage(host: str, tmp: Path) -> None:
    c = client(host, tmp)
    assert c.predict("Ada", api_name="/greet") == "Hello Ada!"
    assert c.predict(5, api_name="/increment") == 6 and c.predict(5, api_name="/decrement") == 4
    pages = {p[0] for p in config(host)["pages"]}
    assert {"", "up", "interface"} <= pages
    page = httpx.get(host + "/up", timeout=20)
    assert page.status_code == 200 and "<html" in page.text.lower()


def custom_css(host: str, tmp: Path) -> None:
    css = config(host)["css"] or ""
    assert ".cool-col" in css and "@keyframes animation" in css  # read from demo/custom_css/custom_css.css


def js_load(host: str, tmp: Path) -> None:
    assert "createGradioAnimation" in (config(host)["js"] or "")
    assert client(host, tmp).predict("Ada", api_name="/welcome") == "Welcome to Gradio, Ada!"


def js_methods(host: str, tmp: Path) -> None:
    assert client(host, tmp).predict("cat", "ate", "fish", api_name="/sentence_maker") == "cat ate fish"
    scripts = [d.get("js") for d in config(host)["dependencies"]]
    assert "(x) => [...x].reverse().join('')" in scripts  # the front-end-only events reach the page


def tax_calculator(host: str, tmp: Path) -> None:
    assets = {"headers": ["Item", "Cost", "Deductible"],
              "data": [["Suit", 5000, True], ["Laptop (for work)", 800, False], ["Car", 1800, True]]}
    assert client(host, tmp).predict(10000, "Married", assets, api_name="/predict") == 1599


def gif_maker(host: str, tmp: Path) -> None:
    frames = [{"image": handle_file(str(CORPUS / "gif_maker" / "images" / f"{i}.png")), "caption": None}
              for i in (1, 2, 3)]
    out = Image.open(client(host, tmp).predict(frames, api_name="/predict"))
    assert out.format == "GIF" and getattr(out, "n_frames", 1) == 3


def timer(host: str, tmp: Path) -> None:
    assert abs(client(host, tmp).predict(api_name="/timestamp") - time.time()) < 30


def sepia(host: str, tmp: Path) -> None:
    out = Image.open(client(host, tmp).predict(handle_file(png(tmp, "g.png", (40, 160, 40))),
                                              api_name="/predict")).convert("RGB")
    r, g, b = out.getpixel((10, 10))  # type: ignore[misc]
    assert r > g > b  # green in, sepia out


def fake_diffusion(host: str, tmp: Path) -> None:
    job = client(host, tmp).submit(1, api_name="/predict")
    final = Image.open(job.result(timeout=60)).convert("RGB")
    assert len(job.outputs()) == 2  # one noisy step, then the result
    assert final.size == (1000, 1000) and near(final.getpixel((500, 500)), (255, 124, 0))


def flipper(host: str, tmp: Path) -> None:
    c = client(host, tmp)
    assert c.predict("stressed", api_name="/flip_text") == "desserts"
    src = Image.new("RGB", (20, 10), (0, 0, 255))
    src.paste((255, 0, 0), (0, 0, 5, 10))
    src.save(tmp / "half.png")
    out = Image.open(c.predict(handle_file(str(tmp / "half.png")), api_name="/flip_image")).convert("RGB")
    assert near(out.getpixel((19, 5)), (255, 0, 0)) and near(out.getpixel((0, 5)), (0, 0, 255))


def blocks_flag(host: str, tmp: Path) -> None:
    c = client(host, tmp)
    out = Image.open(c.predict(handle_file(png(tmp, "g.png", (40, 160, 40))), 1, api_name="/sepia")).convert("RGB")
    r, g, b = out.getpixel((10, 10))  # type: ignore[misc]
    assert r > g > b


def stock_forecast(host: str, tmp: Path) -> None:
    plot = client(host, tmp).predict(2030, ["Google", "Gradio"], 10, True, "line", api_name="/predict")
    assert plot["type"] == "matplotlib"
    data = plot["plot"]
    assert data.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1]))).format == "PNG"


def server_app(host: str, tmp: Path) -> None:
    c = client(host, tmp)
    assert c.predict(3, 5, api_name="/add") == 8 and c.predict(3, 5, api_name="/multiply") == 15
    page = httpx.get(host + "/", timeout=20)
    assert page.status_code == 200 and "<title>Calculator</title>" in page.text  # the app's own route


def native_plots(host: str, tmp: Path) -> None:
    plots = {(p["props"]["name"], p["props"]["x"], p["props"]["y"], len(p["props"]["value"]["data"]))
             for p in components_of(config(host), "nativeplot")}
    for kind in ("lineplot", "scatterplot", "barplot"):  # one module each, data from data.py
        assert (kind, "time", "temperature", 200) in plots and (kind, "cuisine", "price", 100) in plots, plots


# ---- streamlit checks ---------------------------------------------------------------------------------------

def st_texts(host: str, page: str = "", **kw: Any) -> str:
    from tests.e2e.streamlit_ws import run_script
    return "\n".join(run_script(host, page_name=page, **kw))


def st_mpa_hello(host: str, tmp: Path) -> None:
    assert "Welcome to Streamlit!" in st_texts(host)
    webcam = st_texts(host, "Webcam_Demo")  # pages/4_📷_Webcam_Demo.py: imports cv2 and utils.py
    assert "# Webcam Demo" in webcam and "camera_input" in webcam and "exception {" not in webcam


def st_custom_navigation(host: str, tmp: Path) -> None:
    main = st_texts(host)
    assert "Select your role:" in main and "Log in" in main  # app.py with menu.py's page_link
    redirected = st_texts(host, "user")  # pages/user.py without a role: st.switch_page("app.py")
    assert "Select your role:" in redirected and "This page is available to all users" not in redirected


def st_chat(reply: Callable[[str], bool]) -> Check:
    def check(host: str, tmp: Path) -> None:
        texts = st_texts(host, chat="ping from the corpus")
        assert "ping from the corpus" in texts and reply(texts), texts[-2000:]
    return check
