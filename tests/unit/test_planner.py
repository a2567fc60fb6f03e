"""Build planning: decisions written down, dependency files read, environments keyed by their inputs only."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from builder.checkout import checkout, lfs_oid
from builder.detect import NoAppFile
from builder.plan import BuildPlan
from builder.planner import RepoFiles, install_requirements, plan_build, requirement_lines
from core.errors import BuildFailed, ConfigError
from core.stages import Sdk
from sdk_templates import DEFAULT_PYTHON, DEFAULT_SDK_VERSIONS

GRADIO_APP = "import gradio as gr\ngr.Interface(lambda x: x, 'text', 'text').launch()\n"


def repo(root: Path, files: dict[str, str]) -> str:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root)


def plan(tmp_path: Path, files: dict[str, str], name: str = "r") -> BuildPlan:
    return plan_build("alice/demo", "0" * 40, repo(tmp_path / name, files))


# (id, files, decisions expected (substrings, each in some line), attributes expected)
DECISIONS = [
    ("readme-sdk", {"README.md": "---\nsdk: gradio\n---\n", "app.py": GRADIO_APP},
     ["sdk: gradio (README.md sets sdk: gradio)", "app file: app.py",
      f"python: {DEFAULT_PYTHON} (default", f"gradio version: {DEFAULT_SDK_VERSIONS[Sdk.GRADIO]} (default",
      "port: 7860 (gradio default)", "requirements: none"],
     {"sdk": Sdk.GRADIO, "port": 7860, "python_version": DEFAULT_PYTHON}),
    ("detected-streamlit", {"app.py": "import streamlit as st\n"},
     ["sdk: streamlit (no sdk in README.md; app.py imports streamlit)", "port: 8501"],
     {"sdk": Sdk.STREAMLIT, "port": 8501, "sdk_version": DEFAULT_SDK_VERSIONS[Sdk.STREAMLIT]}),
    ("versions-from-readme",
     {"README.md": "---\nsdk: gradio\nsdk_version: 5.9.1\npython_version: 3.12\n---\n", "app.py": GRADIO_APP},
     ["python: 3.12 (README.md sets python_version: 3.12)", "gradio version: 5.9.1 (README.md sets sdk_version"],
     {"python_version": "3.12", "sdk_version": "5.9.1"}),
    ("docker-app_port", {"README.md": "---\nsdk: docker\napp_port: 8000\n---\n", "Dockerfile": "FROM x\n",
                         "packages.txt": "ffmpeg\n# c\nlibsm6\n"},
     ["port: 8000 (README.md sets app_port: 8000)", "packages.txt: 2 Debian packages, installed with apt"],
     {"sdk": Sdk.DOCKER, "port": 8000, "sdk_version": None, "packages": ("ffmpeg", "libsm6")}),
    ("docker-default-port", {"Dockerfile": "FROM x\n"}, ["Dockerfile", "port: 7860"], {"port": 7860}),
    ("app_port-ignored-for-gradio", {"README.md": "---\nsdk: gradio\napp_port: 9000\n---\n", "app.py": GRADIO_APP},
     ["app_port: 9000 applies to docker Spaces only"], {"port": 7860}),
    ("static", {"index.html": "<h1>hi</h1>"}, ["sdk: static", "port: none"],
     {"sdk": Sdk.STATIC, "sdk_version": None, "requirements": ()}),
    ("requirements", {"app.py": GRADIO_APP, "requirements.txt": "# deps\nsix==1.16  # pinned\n\nidna\n",
                      "pre-requirements.txt": "pip>=24\n"},
     ["requirements: 2 from requirements.txt", "pre-requirements: 1 from pre-requirements.txt"],
     {"requirements": ("six==1.16", "idna"), "pre_requirements": ("pip>=24",)}),
    ("sdk-pinned-in-requirements", {"app.py": GRADIO_APP, "requirements.txt": "gradio==5.0.0\n"},
     ["gradio: the version in requirements.txt wins over sdk_version"], {"requirements": ("gradio==5.0.0",)}),
    ("packages-ignored-by-process", {"app.py": GRADIO_APP, "packages.txt": "ffmpeg\n"},
     ["ignored by the process backend"], {"packages": ("ffmpeg",)}),
]


@pytest.mark.parametrize(("files", "decisions", "attrs"), [c[1:] for c in DECISIONS], ids=[c[0] for c in DECISIONS])
def test_plan_decisions(tmp_path: Path, files: dict[str, str], decisions: list[str],
                        attrs: dict[str, object]) -> None:
    p = plan(tmp_path, files)
    for words in decisions:
        assert any(words in line for line in p.decisions), (words, p.decisions)
    for key, value in attrs.items():
        assert getattr(p, key) == value, key


REQUIREMENT_FILES = [
    ("continuation", {"requirements.txt": "six \\\n  ==1.16\n"}, ("six ==1.16",)),
    ("url-fragment-kept", {"requirements.txt": "git+https://x.test/r.git#egg=r\n"},
     ("git+https://x.test/r.git#egg=r",)),
    ("options-kept", {"requirements.txt": "--extra-index-url https://x.test/simple\ntorch\n"},
     ("--extra-index-url https://x.test/simple", "torch")),
    ("include", {"requirements.txt": "-r deps/base.txt\nsix\n", "deps/base.txt": "idna\n-r more.txt\n",
                 "deps/more.txt": "attrs\n"}, ("idna", "attrs", "six")),
    ("include-equals", {"requirements.txt": "--requirement=b.txt\n", "b.txt": "six\n"}, ("six",)),
]


@pytest.mark.parametrize(("files", "lines"), [c[1:] for c in REQUIREMENT_FILES],
                         ids=[c[0] for c in REQUIREMENT_FILES])
def test_requirement_lines(tmp_path: Path, files: dict[str, str], lines: tuple[str, ...]) -> None:
    assert requirement_lines(RepoFiles(Path(repo(tmp_path, files))), "requirements.txt") == lines


REFUSED = [
    ("include-outside", {"requirements.txt": "-r ../../etc/passwd\n"}, "line 1: -r ../../etc/passwd is not a file"),
    ("include-absolute", {"requirements.txt": "six\n-r /etc/passwd\n"}, "line 2"),
    ("include-missing", {"requirements.txt": "-r nope.txt\n"}, "not a file inside the repository"),
    ("include-cycle", {"requirements.txt": "-r a.txt\n", "a.txt": "-r requirements.txt\n"}, "includes itself"),
    ("constraints", {"requirements.txt": "-c c.txt\n", "c.txt": ""}, "constraint files"),
]


@pytest.mark.parametrize(("files", "words"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_requirement_includes_refused(tmp_path: Path, files: dict[str, str], words: str) -> None:
    with pytest.raises(BuildFailed) as info:
        plan(tmp_path, {"app.py": GRADIO_APP, **files})
    assert words in info.value.message


def test_symlink_out_of_the_checkout_is_absent(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("---\nsdk: static\n---\n")
    root = Path(repo(tmp_path / "r", {"app.py": GRADIO_APP}))
    (root / "README.md").symlink_to(secret)
    (root / "requirements.txt").symlink_to(secret)
    p = plan_build("a/b", "0" * 40, str(root))
    assert p.sdk is Sdk.GRADIO and p.requirements == ()


def test_errors_propagate(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        plan(tmp_path, {"README.md": "---\nsdk: nope\n---\n", "app.py": GRADIO_APP}, "a")
    with pytest.raises(NoAppFile):
        plan(tmp_path, {"README.md": "# nothing\n"}, "b")


# ---- environment keys ------------------------------------------------------------------------------------

BASE = {"README.md": "---\nsdk: gradio\ntitle: A\n---\n", "app.py": GRADIO_APP, "requirements.txt": "six\n"}
KEYS = [
    ("code-change", {"app.py": GRADIO_APP + "# v2\n"}, True),
    ("title-change", {"README.md": "---\nsdk: gradio\ntitle: B\n---\n"}, True),
    ("comment-in-requirements", {"requirements.txt": "# six for compat\nsix\n"}, True),
    ("new-file", {"utils.py": "X = 1\n"}, True),
    ("requirement-change", {"requirements.txt": "six==1.16\n"}, False),
    ("requirement-added", {"requirements.txt": "six\nidna\n"}, False),
    ("pre-requirement", {"pre-requirements.txt": "pip\n"}, False),
    ("sdk-version", {"README.md": "---\nsdk: gradio\nsdk_version: 5.0.0\n---\n"}, False),
    ("python-version", {"README.md": "---\nsdk: gradio\npython_version: 3.12\n---\n"}, False),
    ("sdk", {"README.md": "---\nsdk: streamlit\n---\n"}, False),
]


@pytest.mark.parametrize(("change", "same"), [c[1:] for c in KEYS], ids=[c[0] for c in KEYS])
def test_env_key(tmp_path: Path, change: dict[str, str], same: bool) -> None:
    a = plan(tmp_path, BASE, "a")
    b = plan(tmp_path, {**BASE, **change}, "b")
    assert (a.env_key == b.env_key) is same
    assert a.env_key == plan(tmp_path, BASE, "c").env_key


INSTALLS = [
    ("gradio", {"app.py": GRADIO_APP, "requirements.txt": "six\n"},
     (f"gradio=={DEFAULT_SDK_VERSIONS[Sdk.GRADIO]}", "huggingface_hub", "requests", "spaces", "six")),
    ("streamlit", {"app.py": "import streamlit\n"}, (f"streamlit=={DEFAULT_SDK_VERSIONS[Sdk.STREAMLIT]}",)),
    ("user-pins-sdk", {"app.py": GRADIO_APP, "requirements.txt": "Gradio[oauth]==5.0\nhuggingface-hub<1\n"},
     ("requests", "spaces", "Gradio[oauth]==5.0", "huggingface-hub<1")),
    ("static", {"index.html": ""}, ()),
]


@pytest.mark.parametrize(("files", "expected"), [c[1:] for c in INSTALLS], ids=[c[0] for c in INSTALLS])
def test_install_requirements(tmp_path: Path, files: dict[str, str], expected: tuple[str, ...]) -> None:
    assert install_requirements(plan(tmp_path, files)) == expected


# ---- checkout --------------------------------------------------------------------------------------------

def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def test_checkout_is_world_readable_and_drops_escaping_links(tmp_path: Path) -> None:
    work = Path(repo(tmp_path / "w", {"app.py": GRADIO_APP, "bin/run.sh": "echo\n", "big.bin": "x"}))
    os.chmod(work / "bin/run.sh", 0o700)
    os.chmod(work / "app.py", 0o600)
    (work / "passwd").symlink_to("/etc/passwd")
    (work / "inside").symlink_to("app.py")
    _git("init", "-q", cwd=work)
    _git("add", "-A", cwd=work)
    _git("commit", "-qm", "x", cwd=work)
    sha = _git("rev-parse", "HEAD", cwd=work).strip()
    dest = checkout(work / ".git", sha, tmp_path / "out")
    assert sorted(p.name for p in dest.iterdir()) == ["app.py", "big.bin", "bin", "inside"]
    assert (dest / "app.py").stat().st_mode & 0o777 == 0o644
    assert (dest / "bin").stat().st_mode & 0o777 == 0o755
    assert (dest / "bin/run.sh").stat().st_mode & 0o777 == 0o755
    assert (dest / "inside").read_text() == GRADIO_APP


def test_checkout_unknown_commit(tmp_path: Path) -> None:
    work = Path(repo(tmp_path / "w", {"a": "b"}))
    _git("init", "-q", cwd=work)
    with pytest.raises(BuildFailed, match="could not read commit"):
        checkout(work / ".git", "f" * 40, tmp_path / "out")


def test_checkout_resolves_lfs_pointers_it_has(tmp_path: Path) -> None:
    import hashlib

    def pointer(data: bytes) -> str:
        return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
                f"size {len(data)}\n")

    work = Path(repo(tmp_path / "w", {".gitattributes": "*.bin filter=lfs diff=lfs merge=lfs -text\n",
                                      "have.bin": pointer(b"weights"), "missing.bin": pointer(b"other")}))
    no_lfs = ["-c", "filter.lfs.clean=", "-c", "filter.lfs.process=", "-c", "filter.lfs.required=false"]
    _git("init", "-q", cwd=work)
    _git(*no_lfs, "add", "-A", cwd=work)
    _git(*no_lfs, "commit", "-qm", "x", cwd=work)
    oid = hashlib.sha256(b"weights").hexdigest()
    store = work / ".git/lfs/objects" / oid[:2] / oid[2:4]
    store.mkdir(parents=True)
    (store / oid).write_bytes(b"weights")
    dest = checkout(work / ".git", _git("rev-parse", "HEAD", cwd=work).strip(), tmp_path / "out")
    assert (dest / "have.bin").read_bytes() == b"weights"
    assert (dest / "missing.bin").read_text() == pointer(b"other")
    assert (dest / "have.bin").stat().st_mode & 0o777 == 0o644


def test_lfs_pointer() -> None:
    oid = "a" * 64
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize 12\n".encode()
    assert lfs_oid(pointer) == oid
    assert lfs_oid(b"hello") is None
