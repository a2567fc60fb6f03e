"""JSON shapes of the API, as huggingface_hub parses them (`SpaceInfo`, `SpaceRuntime`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from core.hardware import FLAVORS, Flavor, Hardware, flavor
from core.ids import SpaceId
from core.stages import SpaceStage
from hub.control import Hub
from hub.phases import space_phases
from hub.store import SpaceRecord, utcnow
from state.community import like_count


def iso(t: dt.datetime) -> str:
    return t.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def sleep_seconds(space: SpaceRecord) -> int | None:
    if space.sleep_time is not None:
        return space.sleep_time
    return flavor(space.hardware).default_sleep_s


def runtime_view(hub: Hub, space: SpaceRecord) -> dict[str, Any]:
    running = space.stage in (SpaceStage.RUNNING, SpaceStage.RUNNING_BUILDING, SpaceStage.RUNNING_APP_STARTING)
    f = flavor(space.hardware)
    host = hub.app_url(space).split("://", 1)[1]
    view: dict[str, Any] = {
        "stage": space.stage,
        "hardware": {
            "current": space.hardware if running else None,
            "requested": space.hardware,
            "currentPrettyName": f.pretty_name if running else None,
            "requestedPrettyName": f.pretty_name,
        },
        "storage": None,
        "gcTimeout": sleep_seconds(space),
        "replicas": {"requested": 1, **({"current": 1} if running else {})},
        "devMode": False,
        "domains": [{"domain": host, "stage": "READY"}],
        "sha": space.serving_sha or space.head_sha,
        "resources": {"requests": {"cpu": f.cpu, "memory": f"{f.memory_gb}Gi", "gpu": f.gpus},
                      "limits": {"cpu": f.cpu, "memory": f"{f.memory_gb}Gi", "gpu": f.gpus}},
    }
    if space.error:
        view["errorMessage"] = space.error
    from hub.hotreload import hot_reloading
    from state.space_settings import dev_mode, storage_tier, volumes

    view["devMode"] = dev_mode(hub.store, space.id)
    view["storage"] = storage_tier(hub.store, space.id)
    target = hub.control.reload_target(space.space_id, visit=False) if running else None
    if (hr := hot_reloading(hub.store, space, target[0] if target else None)) is not None:
        view["hotReloading"] = hr
    if vols := volumes(hub.store, space.id):
        view["volumes"] = [v.as_json() for v in vols]
    view["sandbox"] = hub.sandbox.label()  # spacehost's own: "on", or "off (--insecure-no-sandbox)", …
    extra = hub.control.runtime_extra(space.space_id)
    view.update(extra)
    # spacehost's own: why it is still building (phases with durations, and the last good build's)
    view.update(space_phases(hub.space_dir(space.space_id), space.head_sha, utcnow(), extra))
    return view


def card_data(hub: Hub, space: SpaceRecord) -> dict[str, Any] | None:
    if not space.head_sha:
        return None
    from builder.frontmatter import parse_readme
    from core.errors import SpacehostError

    sid = SpaceId(space.owner, space.name)
    try:
        text = hub.repos.read(sid, space.head_sha, "README.md").decode("utf-8", errors="replace")
        cfg = parse_readme(text)
    except SpacehostError:
        return None
    data: dict[str, Any] = {}
    for k in cfg.__dataclass_fields__:
        v = getattr(cfg, k)
        if k == "extra":
            data.update(dict(v))
        elif k == "custom_headers" and v:
            data[k] = dict(v)
        elif v not in (None, (), False) or (k == "disable_embedding" and v):
            data[k] = v.value if hasattr(v, "value") else (list(v) if isinstance(v, tuple) else v)
    return data


def space_view(hub: Hub, space: SpaceRecord, *, full: bool = True, likes: int | None = None) -> dict[str, Any]:
    """A Space as `SpaceInfo` reads it; `likes` from a listing's one count of all (`like_counts`), else counted."""
    sid = SpaceId(space.owner, space.name)
    url = hub.app_url(space)
    view: dict[str, Any] = {
        "_id": f"space-{space.id}",
        "id": space.space_id,
        "author": space.owner,
        "sha": space.head_sha,
        "private": space.private,
        "visibility": "private" if space.private else "public",
        "gated": False,
        "disabled": False,
        "sdk": space.sdk,
        "host": url,
        "subdomain": sid.subdomain,
        "likes": like_count(hub.store, space.id) if likes is None else likes,
        "tags": [t for t in (space.sdk, "region:local") if t],
        "createdAt": iso(space.created_at),
        "lastModified": iso(space.last_modified),
    }
    if full:
        siblings = []
        if space.head_sha:
            siblings = siblings_json(hub, sid, space.head_sha)
        cd = card_data(hub, space)
        view.update({"siblings": siblings, "cardData": cd, "runtime": runtime_view(hub, space)})
        if cd:
            view.update({k: cd[k] for k in ("title", "emoji", "colorFrom", "colorTo") if k in cd})
    return view


def siblings_json(hub: Hub, sid: SpaceId, sha: str) -> list[dict[str, Any]]:
    """The files of commit `sha` as info's `siblings`; an LFS file's `size` is its content's, with
    `lfs: {sha256, size, pointerSize}` (the Hub's shape there, unlike the tree's `oid`)."""
    files = hub.repos.files(sid, sha)
    ptrs = hub.repos.pointers(sid, [(e.blob_id, e.size) for e in files])
    out = []
    for e in files:
        entry: dict[str, Any] = {"rfilename": e.path, "size": e.size, "blobId": e.blob_id}
        if (p := ptrs.get(e.blob_id)) is not None:
            entry.update(size=p.size, lfs={"sha256": p.oid, "size": p.size, "pointerSize": e.size})
        out.append(entry)
    return out


GPU_MODELS = {"t4": ("T4", 16), "l4": ("L4", 24), "l40s": ("L40S", 48), "a10g": ("A10G", 24),
              "a100": ("A100", 80), "zero": ("ZeroGPU (shared pool)", 0)}


def accelerator_json(f: Flavor) -> dict[str, str] | None:
    """HF's `accelerator` of a flavor: null for CPU flavors, else {type, model, quantity, vram, manufacturer}."""
    if f.accelerator is None:
        return None
    model, vram = GPU_MODELS.get(f.accelerator, (f.accelerator.upper(), 0))
    n = max(f.gpus, 1)
    return {"type": "gpu", "model": model, "quantity": str(n), "vram": f"{vram * n} GB" if vram else "shared",
            "manufacturer": "Nvidia"}


def hardware_list() -> list[dict[str, Any]]:
    return [{"name": h.value, "prettyName": f.pretty_name, "cpu": f"{f.cpu:g} vCPU", "ram": f"{f.memory_gb} GB",
             "ephemeralStorage": "50 GB", "accelerator": accelerator_json(f), "unitCostMicroUSD": 0,
             "unitCostUSD": 0, "unitLabel": "hour"}
            for h, f in FLAVORS.items() if isinstance(h, Hardware)]
