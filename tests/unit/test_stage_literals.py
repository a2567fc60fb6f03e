"""Stages are `SpaceStage` members in product code, never raw strings: a string constant equal to a stage's
value ("RUNNING", "BUILD_ERROR", …) anywhere in our packages fails, except in core/stages.py (where they are
defined) and the migrations (history, as it was written). Files in ALLOWED still hold some; the list may only
shrink: a listed file without any fails too (delete it from the list)."""

from __future__ import annotations

import ast
from pathlib import Path

from core.stages import SpaceStage
from tests.unit.test_layers import ROOT, our_modules

STAGES = frozenset(s.value for s in SpaceStage)
DEFINED = {"core/stages.py"}
HISTORY = ("state/migrations/",)
ALLOWED: set[str] = set()  # files exempt from the rule: none, and it may only stay so


def raw_stages(source: str) -> list[tuple[int, str]]:
    """(line, literal) of every string constant in `source` that spells a stage."""
    return sorted((node.lineno, node.value) for node in ast.walk(ast.parse(source))
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in STAGES)


def product_files() -> dict[str, Path]:
    files = {str(path.relative_to(ROOT)): path for path in our_modules().values()}
    return {rel: path for rel, path in files.items()
            if rel not in DEFINED and not rel.startswith(HISTORY)}


def test_a_raw_stage_is_found_wherever_it_is() -> None:
    source = ('x = "RUNNING"\nif s in ("BUILDING", SpaceStage.PAUSED):\n    pass\n'
              'def f(stage="SLEEPING"): return {"APP_STARTING": 1}\ny = "running"\nz = f"{s} RUNNING"\n')
    assert raw_stages(source) == [(1, "RUNNING"), (2, "BUILDING"), (4, "APP_STARTING"), (4, "SLEEPING")]


def test_product_code_names_stages_by_their_enum() -> None:
    found = {rel: hits for rel, path in product_files().items() if (hits := raw_stages(path.read_text()))}
    assert {rel: hits for rel, hits in found.items() if rel not in ALLOWED} == {}, "use SpaceStage.<NAME>"
    assert ALLOWED - set(found) == set(), "no raw stage left there: delete it from ALLOWED"
