"""JSON Schema files for channels in other languages: `python -m events.schemas [--check]`.

One file per type and version (``touchpoint.call.v2.json``), and ``touchpoint.json``: every
shape the doors accept, one branch per type and version. The union carries no version in its
name because versions belong to types: it grows a branch when a type gets a version, while the
files of the versions before stay as they are.
"""

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from events.identity import CustomersLinked
from events.touchpoints import VERSIONED, Touchpoint

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _titled(schema: dict[str, Any], title: str) -> dict[str, Any]:
    return {"$schema": DIALECT, **schema, "title": title}


def build_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema (validation mode) for every published event shape."""
    schemas = {
        f"touchpoint.{kind}.v{v}.json": _titled(
            model.model_json_schema(mode="validation"), f"Touchpoint: {kind} (v{v})"
        )
        for (kind, v), model in VERSIONED.items()
    }
    union = TypeAdapter(Touchpoint).json_schema(mode="validation")
    schemas["touchpoint.json"] = _titled(union, "Touchpoint")
    linked = CustomersLinked.model_json_schema(mode="validation")
    schemas["customers_linked.v1.json"] = _titled(linked, "CustomersLinked (v1)")
    return schemas


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every file, and remove the JSON files the models no longer make (the directory
    holds generated files only)."""
    directory.mkdir(parents=True, exist_ok=True)
    schemas = build_schemas()
    for path in directory.glob("*.json"):
        if path.name not in schemas:
            path.unlink()
    written = []
    for name, schema in schemas.items():
        path = directory / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


def check_schemas(directory: Path = SCHEMA_DIR) -> list[str]:
    """Problems ("missing: x", "differs: x", "stale: x") between the models and the files; []
    if in sync."""
    schemas = build_schemas()
    problems = []
    for name, schema in schemas.items():
        path = directory / name
        if not path.exists():
            problems.append(f"missing: {path}")
        elif path.read_text(encoding="utf-8") != render(schema):
            problems.append(f"differs: {path}")
    problems += [f"stale: {path}" for path in sorted(directory.glob("*.json"))
                 if path.name not in schemas]
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        problems = check_schemas()
        for problem in problems:
            print(problem)
        if problems:
            print("schemas are out of date; run: python -m events.schemas")
        return 1 if problems else 0
    if args:
        print("usage: python -m events.schemas [--check]", file=sys.stderr)
        return 2
    for path in write_schemas():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
