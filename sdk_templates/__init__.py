"""One entry per SDK: how its app is launched, on which port, and how readiness is probed.
The Dockerfile template of each SDK lives beside this file (`<sdk>/Dockerfile`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.stages import Sdk

DEFAULT_SDK_VERSIONS = {Sdk.GRADIO: "6.31.0", Sdk.STREAMLIT: "1.67.0"}
DEFAULT_PYTHON = "3.11"


@dataclass(frozen=True)
class SdkTemplate:
    sdk: Sdk
    default_port: int
    default_app_file: str
    health_path: str
    package: str | None  # the PyPI distribution installed at `sdk_version`

    def command(self, python: str, app_file: str, port: int) -> list[str]:
        """argv that starts the app with interpreter `python`, listening on 0.0.0.0:`port`."""
        if self.sdk is Sdk.STREAMLIT:
            return [
                python, "-m", "streamlit", "run", app_file,
                "--server.port", str(port), "--server.address", "0.0.0.0",
                "--server.headless", "true", "--browser.gatherUsageStats", "false",
                # Cookie-based XSRF breaks inside a cross-site iframe; Hugging Face disables it too.
                "--server.enableXsrfProtection", "false", "--server.enableCORS", "false",
                "--server.fileWatcherType", "none",
            ]
        return [python, app_file]

    def dockerfile(self) -> Path:
        return Path(__file__).parent / self.sdk.value / "Dockerfile"


TEMPLATES: dict[Sdk, SdkTemplate] = {
    Sdk.GRADIO: SdkTemplate(Sdk.GRADIO, 7860, "app.py", "/", "gradio"),
    Sdk.STREAMLIT: SdkTemplate(Sdk.STREAMLIT, 8501, "app.py", "/_stcore/health", "streamlit"),
    Sdk.STATIC: SdkTemplate(Sdk.STATIC, 0, "index.html", "/", None),
    Sdk.DOCKER: SdkTemplate(Sdk.DOCKER, 7860, "Dockerfile", "/", None),
}
