"""The build backend contract, run over every backend in BACKENDS (another backend joins by appending its name
and, if its artifact is checked differently, an entry in ARTIFACT_CHECKS). Then checks only `process` makes."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from builder import load_backend
from builder.backend import BuildBackend, BuildContext
from builder.plan import BuildPlan
from builder.planner import plan_build
from builder.uv_backend import MARKER, Interpreter, UvBackend, choose_python, failure_message
from core.artifact import Artifact
from core.errors import BuildFailed, ConfigError
from core.settings import Settings
from core.stages import Sdk

BACKENDS = ["process"]
GRADIO_APP = "import gradio as gr\n\ngr.Interface(lambda x: x, 'text', 'text').launch()\n"


def _check_process(art: Artifact) -> None:
    assert art.env_dir and art.env_key and Path(art.env_dir).name == art.env_key
    out = subprocess.run([f"{art.env_dir}/bin/python", "-c",
                          "import importlib.util as u, six; print(bool(u.find_spec('gradio')))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    unreadable = [p for p in Path(art.env_dir).rglob("*") if not p.is_symlink() and not p.stat().st_mode & 0o004]
    assert unreadable == []  # the sandbox user (uid 1000) reads everything


ARTIFACT_CHECKS: dict[str, Callable[[Artifact], None]] = {"process": _check_process}


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def has(self, words: str) -> bool:
        return any(words in line for line in self.lines)


def make_plan(root: Path, files: dict[str, str]) -> BuildPlan:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return plan_build("alice/demo", "1" * 40, str(root))


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> BuildBackend:
    data = tmp_path_factory.mktemp(f"data-{request.param}")
    backend = load_backend(request.param, Settings(data_dir=data))
    if isinstance(backend, UvBackend):
        backend.compile_bytecode = False  # keeps 2 CI cores free; test_bytecode_is_compiled checks it
    return backend


def test_builds_then_reuses(backend: BuildBackend, tmp_path: Path) -> None:
    plan = make_plan(tmp_path / "src", {"app.py": GRADIO_APP, "requirements.txt": "six\n"})
    first = Log()
    art = backend.build(plan, BuildContext(log=first))
    assert (art.space_id, art.sha, art.sdk, art.app_dir, art.app_file, art.port) == (
        "alice/demo", "1" * 40, Sdk.GRADIO, plan.source_dir, "app.py", 7860)
    assert art.config == plan.config
    assert first.has("six")  # what was installed shows in the log
    ARTIFACT_CHECKS[backend.name](art)

    code_change = make_plan(tmp_path / "src2", {"app.py": GRADIO_APP + "# v2\n", "requirements.txt": "six\n"})
    second = Log()
    t0 = time.monotonic()
    again = backend.build(code_change, BuildContext(log=second))
    assert time.monotonic() - t0 < 5
    assert second.has("reused") and not second.has("six")
    assert (again.env_dir, again.env_key, again.image) == (art.env_dir, art.env_key, art.image)
    assert again.app_dir == code_change.source_dir


def test_nonexistent_requirement_fails_clearly(backend: BuildBackend, tmp_path: Path) -> None:
    plan = make_plan(tmp_path / "src", {"app.py": GRADIO_APP,
                                        "requirements.txt": "six\nspacehost-no-such-package-4711\n"})
    log = Log()
    with pytest.raises(BuildFailed) as info:
        backend.build(plan, BuildContext(log=log))
    assert "spacehost-no-such-package-4711" in info.value.message
    assert "spacehost-no-such-package-4711" in info.value.log_tail
    assert 0 < len(info.value.log_tail.splitlines()) <= 60
    with pytest.raises(BuildFailed):  # a failed build leaves nothing a later build would reuse
        backend.build(plan, BuildContext(log=Log()))


def test_static_needs_no_environment(backend: BuildBackend, tmp_path: Path) -> None:
    plan = make_plan(tmp_path / "src", {"README.md": "---\nsdk: static\napp_file: site/index.html\n---\n",
                                        "site/index.html": "<h1>hi</h1>"})
    art = backend.build(plan, BuildContext(log=Log()))
    assert (art.sdk, art.app_file, art.static_root) == (Sdk.STATIC, "site/index.html", str(tmp_path / "src/site"))
    assert art.env_dir is None


# ---- process backend specifics ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def uv_backend(tmp_path_factory: pytest.TempPathFactory) -> UvBackend:
    backend = UvBackend(Settings(data_dir=tmp_path_factory.mktemp("data-uv")))
    backend.compile_bytecode = False  # as in `backend`
    return backend


def test_docker_sdk_is_refused(uv_backend: UvBackend, tmp_path: Path) -> None:
    plan = make_plan(tmp_path / "src", {"Dockerfile": "FROM scratch\n"})
    with pytest.raises(ConfigError, match="--runtime docker"):
        uv_backend.build(plan, BuildContext(log=Log()))


def test_concurrent_builds_share_one_environment(uv_backend: UvBackend, tmp_path: Path) -> None:
    plans = [make_plan(tmp_path / f"s{i}", {"app.py": GRADIO_APP, "requirements.txt": "six\nidna\n"})
             for i in range(2)]
    logs = [Log(), Log()]
    results: list[Artifact | BaseException] = []
    threads = [threading.Thread(target=lambda p=p, lg=lg: results.append(uv_backend.build(p, BuildContext(log=lg))))
               for p, lg in zip(plans, logs, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and all(isinstance(r, Artifact) for r in results)
    assert len({r.env_dir for r in results if isinstance(r, Artifact)}) == 1
    assert sum(lg.has("built in") for lg in logs) == 1 and sum(lg.has("reused") for lg in logs) == 1


def test_factory_rebuild_builds_afresh(uv_backend: UvBackend, tmp_path: Path) -> None:
    plan = make_plan(tmp_path / "src", {"app.py": GRADIO_APP, "requirements.txt": "six\n"})
    art = uv_backend.build(plan, BuildContext(log=Log()))
    assert art.env_dir is not None
    before = os.stat(Path(art.env_dir) / MARKER).st_ino
    log = Log()
    again = uv_backend.build(plan, BuildContext(log=log, no_cache=True))
    assert again.env_dir == art.env_dir and log.has("built in") and not log.has("reused")
    assert os.stat(Path(art.env_dir) / MARKER).st_ino != before
    assert any((uv_backend.envs / ".trash").iterdir())  # the replaced env stays for Spaces still running on it


def test_cancel_kills_the_install(uv_backend: UvBackend, tmp_path: Path) -> None:
    plan = make_plan(tmp_path / "src", {"app.py": GRADIO_APP, "requirements.txt": "six\nattrs\n"})
    cancel = threading.Event()

    def log(line: str) -> None:  # cancel the moment the install starts
        if line.startswith("--> installing"):
            cancel.set()

    ctx = BuildContext(log=log, cancel=cancel)
    t0 = time.monotonic()
    with pytest.raises(BuildFailed, match="cancelled"):
        uv_backend.build(plan, ctx)
    assert time.monotonic() - t0 < 5
    assert not (uv_backend.envs / plan.env_key).exists()
    assert not (uv_backend.envs / f".{plan.env_key}.building").exists()


def test_timeout(uv_backend: UvBackend, tmp_path: Path) -> None:
    plan = make_plan(tmp_path / "src", {"app.py": GRADIO_APP, "requirements.txt": "six\npackaging\n"})
    with pytest.raises(BuildFailed, match="time limit of 0s"):
        uv_backend.build(plan, BuildContext(log=Log(), timeout_s=0.01))


PY311 = Interpreter("/usr/bin/python3.11", "3.11", True)
PY312 = Interpreter("/usr/local/bin/python3.12", "3.12", True)
HIDDEN310 = Interpreter("/root/.pyenv/versions/3.10.13/bin/python3.10", "3.10", False)
PYTHONS = [
    ("exact", "3.12", [PY311, PY312], PY312, "python 3.12 from"),
    ("patch-not-pinned", "3.11.7", [PY311], PY311, "patch level"),
    ("missing-uses-preferred", "3.9", [PY312, PY311], PY311, "3.9 is not installed"),
    ("missing-uses-newest", "3.9", [PY312], PY312, "using 3.12"),
    ("unreadable-skipped", "3.10", [HIDDEN310, PY311], PY311, "3.10 is not installed"),
    ("only-unreadable", "3.10", [HIDDEN310], HIDDEN310, "not readable by the sandbox user"),
]


@pytest.mark.parametrize(("requested", "found", "chosen", "words"), [c[1:] for c in PYTHONS],
                         ids=[c[0] for c in PYTHONS])
def test_choose_python(requested: str, found: list[Interpreter], chosen: Interpreter, words: str) -> None:
    interpreter, why = choose_python(requested, found)
    assert interpreter == chosen and words in why


FAILURES = [
    ("not-found", ["Using Python 3.11", "error: No solution found when resolving dependencies",
                   ("  cause: Because nope was not found in the package registry and you require nope, we can "
                   "conclude that your requirements are unsatisfiable.")],
     ["No solution found", "nope was not found", "Check the package names"]),
    ("no-error-line", ["something odd"], ["see the build log"]),
]


@pytest.mark.parametrize(("tail", "words"), [c[1:] for c in FAILURES], ids=[c[0] for c in FAILURES])
def test_failure_message(tail: list[str], words: list[str]) -> None:
    message = failure_message(tail)
    assert all(w in message for w in words), message


def test_bytecode_is_compiled(tmp_path: Path) -> None:
    import sys

    from builder.uv_backend import compile_bytecode

    site = tmp_path / "env/lib/python3.11/site-packages"
    site.mkdir(parents=True)
    (site / "mod.py").write_text("X = 1\n")
    (tmp_path / "env/bin").mkdir()
    (tmp_path / "env/bin/python").symlink_to(sys.executable)
    assert compile_bytecode(tmp_path / "env", sys.executable)
    pyc = list((site / "__pycache__").glob("mod.*.pyc"))
    assert pyc and pyc[0].stat().st_mode & 0o777 == 0o644
