"""Whether Spaces run sandboxed on this host: one answer shared by the runtime (which refuses to start Spaces
without a sandbox), the start banner, the runtime info of each Space and its page."""

from __future__ import annotations

from dataclasses import dataclass

# What a Debian-like host needs for the process sandbox (deploy/install-runtime-deps.sh installs it).
SANDBOX_PACKAGES = ("bubblewrap", "iproute2", "iptables")
INSTALL_HINT = f"apt-get install {' '.join(SANDBOX_PACKAGES)} (as root) and run spacehost as root"
INSECURE_FLAG = "--insecure-no-sandbox"


@dataclass(frozen=True)
class SandboxState:
    """`available`: Spaces are isolated here. Otherwise `why_not` says why, and `insecure` whether the operator
    started spacehost with --insecure-no-sandbox (Spaces then run unsandboxed; without it they are refused)."""

    available: bool
    why_not: str = ""
    insecure: bool = False

    @property
    def refuses(self) -> bool:
        """No Space may start: no sandbox, and the operator did not accept running without one."""
        return not self.available and not self.insecure

    def label(self) -> str:
        """The `sandbox` field of a Space's runtime info."""
        if self.available:
            return "on"
        if self.insecure:
            return f"off ({INSECURE_FLAG})"
        return f"unavailable ({self.why_not}): Spaces are not started"

    def refusal(self) -> str:
        """Why a Space start is refused, and what to do about it (the Space's errorMessage)."""
        return (f"spacehost runs no Space without a sandbox, and there is none here: {self.why_not}. Install it: "
                f"{INSTALL_HINT}; then restart spacehost. To run Spaces unsandboxed anyway (each one can then "
                f"read the data dir, every secret and the other Spaces), start spacehost with {INSECURE_FLAG} "
                "(SPACEHOST_INSECURE_NO_SANDBOX=1).")

    def warning(self) -> str | None:
        """The loud line for the banner and the Space page when Spaces are not sandboxed; None when they are."""
        if self.available:
            return None
        if self.insecure:
            return (f"INSECURE: started with {INSECURE_FLAG} and no sandbox works here ({self.why_not}): Spaces "
                    "run as plain processes of the spacehost user, with access to the data dir, every secret and "
                    "each other.")
        return (f"NO SANDBOX: {self.why_not}. spacehost starts no Space until it is installed ({INSTALL_HINT}), "
                f"or until it is restarted with {INSECURE_FLAG}.")
