"""SDK detection: each rule of the table in order, and every NO_APP_FILE case."""

from __future__ import annotations

import pytest

from builder.detect import RULES, NoAppFile, detect_sdk, imported_sdk
from core.config import SpaceConfig
from core.stages import Sdk

GRADIO = b"import gradio as gr\ngr.Interface(lambda x: x, 'text', 'text').launch()\n"
STREAMLIT = b"import streamlit as st\nst.write('hi')\n"
PLAIN = b"print('hello')\n"


def cfg(**kw: object) -> SpaceConfig:
    return SpaceConfig(**kw)  # type: ignore[arg-type]


# (id, config, files, sdk, app_file, words in the reason)
CASES = [
    ("readme-wins-over-dockerfile", cfg(sdk=Sdk.GRADIO), {"app.py": GRADIO, "Dockerfile": b""},
     Sdk.GRADIO, "app.py", "README.md sets sdk: gradio"),
    ("readme-wins-over-imports", cfg(sdk=Sdk.STREAMLIT), {"app.py": GRADIO}, Sdk.STREAMLIT, "app.py", "README"),
    ("readme-app_file", cfg(sdk=Sdk.GRADIO, app_file="src/ui.py"), {"src/ui.py": PLAIN},
     Sdk.GRADIO, "src/ui.py", "README"),
    ("readme-static-default", cfg(sdk=Sdk.STATIC), {"index.html": b"<h1>"}, Sdk.STATIC, "index.html", "README"),
    ("readme-static-app_file", cfg(sdk=Sdk.STATIC, app_file="dist/index.html"), {"dist/index.html": b""},
     Sdk.STATIC, "dist/index.html", "README"),
    ("readme-docker", cfg(sdk=Sdk.DOCKER), {"Dockerfile": b"FROM x"}, Sdk.DOCKER, "Dockerfile", "README"),
    ("readme-streamlit-common-name", cfg(sdk=Sdk.STREAMLIT), {"streamlit_app.py": STREAMLIT},
     Sdk.STREAMLIT, "streamlit_app.py", "README"),
    ("dockerfile", cfg(), {"Dockerfile": b"FROM x", "app.py": GRADIO}, Sdk.DOCKER, "Dockerfile", "Dockerfile"),
    ("imports-gradio", cfg(), {"app.py": GRADIO}, Sdk.GRADIO, "app.py", "app.py imports gradio"),
    ("imports-streamlit", cfg(), {"app.py": STREAMLIT}, Sdk.STREAMLIT, "app.py", "imports streamlit"),
    ("streamlit_app.py", cfg(), {"streamlit_app.py": STREAMLIT}, Sdk.STREAMLIT, "streamlit_app.py", "imports"),
    ("from-import", cfg(), {"app.py": b"from gradio import Blocks\n"}, Sdk.GRADIO, "app.py", "imports gradio"),
    ("submodule-import", cfg(), {"app.py": b"import streamlit.components.v1 as c\n"}, Sdk.STREAMLIT, "app.py",
     "streamlit"),
    ("syntax-error-regex", cfg(), {"app.py": b"import streamlit as st\nif x\n"}, Sdk.STREAMLIT, "app.py",
     "streamlit"),
    ("imports-win-over-index", cfg(), {"app.py": GRADIO, "index.html": b""}, Sdk.GRADIO, "app.py", "imports"),
    ("app_file-imports", cfg(app_file="ui/main.py"), {"ui/main.py": STREAMLIT, "app.py": GRADIO},
     Sdk.STREAMLIT, "ui/main.py", "ui/main.py imports streamlit"),
    ("index-html", cfg(), {"index.html": b"<h1>", "style.css": b""}, Sdk.STATIC, "index.html", "index.html"),
    ("index-and-plain-py", cfg(), {"index.html": b"", "app.py": PLAIN}, Sdk.STATIC, "index.html", "index.html"),
    ("plain-python-assumes-gradio", cfg(), {"app.py": PLAIN}, Sdk.GRADIO, "app.py", "assuming gradio"),
]


@pytest.mark.parametrize(("config", "files", "sdk", "app_file", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_detect(config: SpaceConfig, files: dict[str, bytes], sdk: Sdk, app_file: str, words: str) -> None:
    d = detect_sdk(config, files)
    assert (d.sdk, d.app_file) == (sdk, app_file)
    assert words in d.reason


# (id, config, files, words in the message)
NO_APP = [
    ("empty-repo", cfg(), {}, "no app file found"),
    ("only-readme", cfg(), {"README.md": b"# hi"}, "no app file found"),
    ("py-with-other-name", cfg(), {"server.py": GRADIO}, "no app file found"),
    ("readme-gradio-no-app", cfg(sdk=Sdk.GRADIO), {"README.md": b""}, "app.py not found; a gradio Space needs"),
    ("readme-streamlit-no-app", cfg(sdk=Sdk.STREAMLIT), {}, "app.py not found"),
    ("readme-static-no-index", cfg(sdk=Sdk.STATIC), {"app.py": GRADIO}, "index.html not found"),
    ("readme-docker-no-dockerfile", cfg(sdk=Sdk.DOCKER), {"app.py": GRADIO}, "needs a Dockerfile"),
    ("app_file-missing", cfg(sdk=Sdk.GRADIO, app_file="main.py"), {"app.py": GRADIO},
     "main.py not found; README.md sets app_file: main.py"),
    ("app_file-missing-no-sdk", cfg(app_file="ui.py"), {"app.py": GRADIO}, "no app file found"),
]


@pytest.mark.parametrize(("config", "files", "words"), [c[1:] for c in NO_APP], ids=[c[0] for c in NO_APP])
def test_no_app_file(config: SpaceConfig, files: dict[str, bytes], words: str) -> None:
    with pytest.raises(NoAppFile) as info:
        detect_sdk(config, files)
    assert words in info.value.message


def test_content_not_read_counts_as_present() -> None:
    d = detect_sdk(cfg(sdk=Sdk.GRADIO), {"app.py": None})
    assert (d.sdk, d.app_file) == (Sdk.GRADIO, "app.py")


IMPORTS = [
    ("none", b"import os\n", None),
    ("gradio-client-is-not-gradio", b"from gradio_client import Client\n", None),
    ("relative-import", b"from .gradio import x\n", None),
    ("first-wins", b"import streamlit\nimport gradio\n", Sdk.STREAMLIT),
    ("nested", b"def f():\n    import gradio\n", Sdk.GRADIO),
    ("regex-fallback-none", b"x = (\n", None),
    ("non-utf8", b"\xff\xfeimport gradio\n", None),
]


@pytest.mark.parametrize(("source", "sdk"), [c[1:] for c in IMPORTS], ids=[c[0] for c in IMPORTS])
def test_imported_sdk(source: bytes, sdk: Sdk | None) -> None:
    assert imported_sdk(source) is sdk


def test_rules_are_ordered_and_named() -> None:
    assert [name for name, _ in RULES] == ["readme", "dockerfile", "python-import", "index-html",
                                           "python-fallback"]
