"""The runtime environment of a Space, as on Hugging Face (DESIGN.md, reference §1.3). Pure."""

from __future__ import annotations

from collections.abc import Mapping

from core.artifact import Artifact
from core.hardware import Flavor
from core.ids import SpaceId


def runtime_env(sid: SpaceId, artifact: Artifact, flavor: Flavor, *, space_host: str, hub_url: str,
                variables: Mapping[str, str], secrets: Mapping[str, str],
                zero_gpu_url: str | None = None) -> dict[str, str]:
    env = {
        "SPACE_ID": str(sid),
        "SPACE_AUTHOR_NAME": sid.owner,
        "SPACE_REPO_NAME": sid.name,
        "SPACE_TITLE": artifact.config.title or sid.name,
        "SPACE_HOST": space_host,
        "SPACE_CREATOR_USER_ID": sid.owner,
        "SYSTEM": "spaces",
        "GRADIO_SERVER_NAME": "0.0.0.0",
        "GRADIO_SERVER_PORT": str(artifact.port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_ENDPOINT": hub_url,
        "CPU_CORES": f"{flavor.cpu:g}",
        "MEMORY": f"{flavor.memory_gb}Gi",
        "ACCELERATOR": flavor.accelerator or "none",
    }
    if zero_gpu_url:
        env["SPACES_ZERO_GPU"] = "true"
        env["SPACES_ZERO_DEVICE_API_URL"] = zero_gpu_url
    env.update(variables)
    env.update(secrets)  # secrets win over variables of the same name, as on Hugging Face
    return env


HOST_URL_KEYS = ("HF_ENDPOINT", "SPACES_ZERO_DEVICE_API_URL")  # the env URLs that point at spacehost itself


def rebase_host_urls(env: Mapping[str, str], bases: Mapping[str, str]) -> dict[str, str]:
    """`env` for an app that reaches spacehost at other addresses (a container: the bridge gateway, not
    127.0.0.1): each HOST_URL_KEYS value that starts with a key of `bases` (a base URL on the host) starts with
    that key's value instead. Other values, variables and secrets included, are left as they are."""
    out = dict(env)
    for key in HOST_URL_KEYS:
        value = env.get(key)
        if value is None:
            continue
        for host_base, app_base in bases.items():
            if value == host_base or value.startswith(host_base.rstrip("/") + "/"):
                out[key] = app_base.rstrip("/") + value[len(host_base.rstrip("/")):]
                break
    return out
