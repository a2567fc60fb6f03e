"""Per-Space settings kept beside secrets and variables (rows of `space_kv`): its volumes (kind `volume`,
keyed by mount path), its dev mode (kind `setting`, key `devMode`), its storage tier (key `storageTier`, which
sizes its volumes) and its last hot reload (key `hotReloading`, hub/hotreload.py). Read by the hub's API and by the controller when it starts or sleeps the Space."""

from __future__ import annotations

from sqlalchemy import delete, select

from state.store import SpaceKV, Store, utcnow
from state.volumes import VolumeSpec, decode, encode

VOLUME, SETTING, DEV_MODE, STORAGE_TIER = "volume", "setting", "devMode", "storageTier"


def volumes(store: Store, space_pk: int) -> tuple[VolumeSpec, ...]:
    return tuple(decode(row.value) for _, row in sorted(store.kv(space_pk, VOLUME).items()))


def set_volumes(store: Store, space_pk: int, vols: tuple[VolumeSpec, ...]) -> bool:
    """Replace the Space's volumes; True when they changed."""
    before = volumes(store, space_pk)
    with store.session() as s:
        s.execute(delete(SpaceKV).where(SpaceKV.space_id == space_pk, SpaceKV.kind == VOLUME))
        for v in vols:
            s.add(SpaceKV(space_id=space_pk, kind=VOLUME, key=v.mount_path, value=encode(v)))
    return tuple(sorted(before, key=lambda v: v.mount_path)) != tuple(sorted(vols, key=lambda v: v.mount_path))


def dev_mode(store: Store, space_pk: int) -> bool:
    return setting(store, space_pk, DEV_MODE) == "1"


def set_dev_mode(store: Store, space_pk: int, enabled: bool) -> bool:
    """Turn dev mode on or off; True when it changed."""
    old = put_setting(store, space_pk, DEV_MODE, "1" if enabled else "0")
    return (old == "1") != enabled


def storage_tier(store: Store, space_pk: int) -> str | None:
    """The Space's storage tier (state.volumes.TIERS), None without one."""
    return setting(store, space_pk, STORAGE_TIER) or None


def set_storage_tier(store: Store, space_pk: int, tier: str | None) -> bool:
    """Set the tier (None: none); True when it changed."""
    return (put_setting(store, space_pk, STORAGE_TIER, tier or "") or None) != tier


def setting(store: Store, space_pk: int, key: str) -> str | None:
    row = store.kv(space_pk, SETTING).get(key)
    return row.value if row is not None else None


def put_setting(store: Store, space_pk: int, key: str, value: str) -> str | None:
    """Store the Space's setting `key`; the value it had before (None: unset)."""
    with store.session() as s:
        row = s.scalar(select(SpaceKV).where(SpaceKV.space_id == space_pk, SpaceKV.kind == SETTING,
                                             SpaceKV.key == key))
        if row is None:
            s.add(SpaceKV(space_id=space_pk, kind=SETTING, key=key, value=value))
            return None
        old, row.value, row.updated_at = row.value, value, utcnow()
        return str(old)
