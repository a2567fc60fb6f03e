"""Writes the schemas `create_all` made before migrations existed, as SQL (one file per commit and dialect), from
the models at those commits: `.venv/bin/python tests/unit/legacy_schema/generate.py`. The files are checked in
(the tests need no git history); this script says where they came from."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

HERE = Path(__file__).parent
COMMITS = {"before_name_keys": "9174d61~1", "create_all_last": "de9fa2d"}  # oldest kept / last before 0001


def _module(name: str, source: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    sys.modules[name] = mod
    exec(compile(source, f"<{name}>", "exec"), mod.__dict__)  # noqa: S102 (this project's own source at a commit)
    return mod


def _show(commit: str, path: str) -> str | None:
    out = subprocess.run(["git", "show", f"{commit}:{path}"], capture_output=True, text=True, cwd=HERE, check=False)
    return out.stdout if out.returncode == 0 else None


def main() -> None:
    for label, commit in COMMITS.items():
        for key in [k for k in sys.modules if k.startswith("legacy")]:
            del sys.modules[key]
        store = _module("legacy_store", _show(commit, "hub/store.py") or "")
        cluster_src = _show(commit, "state/cluster.py")
        if cluster_src:
            _module("legacy_cluster", cluster_src.replace("from hub.store import", "from legacy_store import"))
        dialects = (("sqlite", sqlite.dialect()), ("postgresql", postgresql.dialect()))  # type: ignore[no-untyped-call]
        for dialect_name, dialect in dialects:
            stmts = []
            for table in store.Base.metadata.sorted_tables:
                stmts.append(str(CreateTable(table).compile(dialect=dialect)).strip())
                stmts += [str(CreateIndex(ix).compile(dialect=dialect)).strip() for ix in table.indexes]
            header = f"-- create_all at {commit} ({label}), {dialect_name}: written by generate.py\n"
            (HERE / f"{label}.{dialect_name}.sql").write_text(header + ";\n\n".join(stmts) + ";\n")


if __name__ == "__main__":
    main()
