"""Storage tiers size a Space's volumes (state/volumes.py): the tier's size capped by the operator-wide limit;
no tier, the limit itself; upgrades only."""

from __future__ import annotations

import pytest

from core.errors import BadRequest
from state.volumes import check_tier_change, parse_tier, volume_limit

SIZES = {"small": 20, "medium": 150, "large": 1000}


@pytest.mark.parametrize(("tier", "cap", "limit"), [
    (None, 64, 64),
    (None, 0, 0),
    ("small", 64, 20),
    ("medium", 64, 64),
    ("large", 0, 1000),
], ids=["no-tier-cap", "no-tier-no-limit", "tier-below-cap", "tier-capped", "tier-without-cap"])
def test_volume_limit(tier: str | None, cap: int, limit: int) -> None:
    assert volume_limit(tier, SIZES, cap) == limit


@pytest.mark.parametrize(("current", "wanted", "ok"), [
    (None, "small", True), ("small", "large", True), ("medium", "medium", True), ("large", "small", False),
], ids=["first", "upgrade", "same", "downgrade"])
def test_tier_changes(current: str | None, wanted: str, ok: bool) -> None:
    if ok:
        check_tier_change(current, wanted)
    else:
        with pytest.raises(BadRequest, match="downgrade"):
            check_tier_change(current, wanted)


@pytest.mark.parametrize("body", [{}, {"tier": "xl"}, {"tier": 1}, []], ids=["missing", "unknown", "number", "list"])
def test_parse_tier_refuses(body: object) -> None:
    with pytest.raises(BadRequest, match="small, medium, large"):
        parse_tier(body)
