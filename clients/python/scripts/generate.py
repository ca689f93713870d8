#!/usr/bin/env python3
"""Generates the SDK's derived files; `--check` fails when a committed one is stale.

1. ``src/picloud/types.py``: one TypedDict (or alias) per component schema of
   ``docs/openapi.json``, so the wire types cannot drift from the document.
2. ``src/picloud/_sync_api.py``: the synchronous namespaces, written from the
   asynchronous ones in ``src/picloud/_async_api.py`` by dropping ``async``/``await``
   (the "unasync" technique), so both clients expose the same methods.

    python scripts/generate.py          # rewrite both files
    python scripts/generate.py --check  # exit 1 and name the stale files

Only the standard library is used, so it runs before the package is installed.
"""

from __future__ import annotations

import argparse
import json
import keyword
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent / "src" / "picloud"
REPO = HERE.parent.parent.parent
OPENAPI = REPO / "docs" / "openapi.json"

TYPES_HEADER = '''\
"""The PiCloud API's wire types, generated from docs/openapi.json.

DO NOT EDIT: run ``python clients/python/scripts/generate.py`` after changing the
document; a test fails while this file is stale.

Objects are TypedDicts (responses are plain dicts); keys the document does not
require are ``NotRequired``. This module deliberately does not use
``from __future__ import annotations``: TypedDict must see ``NotRequired`` at runtime
to fill ``__required_keys__`` correctly, and everything here evaluates on 3.9.
"""

import sys
from typing import Any, Dict, List, Literal, Optional, Union

if sys.version_info >= (3, 11):
    from typing import NotRequired, TypedDict
else:
    from typing_extensions import NotRequired, TypedDict

'''


def ref_name(ref: str) -> str:
    prefix = "#/components/schemas/"
    if not ref.startswith(prefix):
        raise SystemExit(f"unsupported $ref {ref!r}")
    return ref[len(prefix) :]


def camel(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", text))


class TypesGenerator:
    def __init__(self, document: dict[str, Any]) -> None:
        self.schemas: dict[str, Any] = document["components"]["schemas"]
        self.aliases: list[str] = []  # enums and primitives: no dependencies
        self.classes: dict[str, str] = {}  # TypedDicts, by name
        self.class_bases: dict[str, str | None] = {}
        self.unions: list[str] = []  # after every class they name

    # -- types of properties -------------------------------------------------------
    def py_type(self, schema: dict[str, Any]) -> str:
        if "$ref" in schema:
            return f'"{ref_name(schema["$ref"])}"'
        if "oneOf" in schema:
            members = schema["oneOf"]
            non_null = [m for m in members if m.get("type") != "null"]
            nullable = len(non_null) != len(members)
            if len(non_null) == 1:
                inner = self.py_type(non_null[0])
            else:
                inner = "Union[" + ", ".join(self.py_type(m) for m in non_null) + "]"
            return f"Optional[{inner}]" if nullable else inner
        if "enum" in schema:
            return "Literal[" + ", ".join(json.dumps(v) for v in schema["enum"]) + "]"
        kind = schema.get("type")
        if kind is None:
            return "Any"
        kinds = kind if isinstance(kind, list) else [kind]
        nullable = "null" in kinds
        kinds = [k for k in kinds if k != "null"]
        if len(kinds) != 1:
            raise SystemExit(f"unsupported type list {kind!r}")
        base = self.primitive(kinds[0], schema)
        return f"Optional[{base}]" if nullable else base

    def primitive(self, kind: str, schema: dict[str, Any]) -> str:
        if kind == "string":
            return "str"
        if kind == "integer":
            return "int"
        if kind == "number":
            return "float"
        if kind == "boolean":
            return "bool"
        if kind == "array":
            return f"List[{self.py_type(schema.get('items', {}))}]"
        if kind == "object":
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                return f"Dict[str, {self.py_type(extra)}]"
            return "Dict[str, Any]"
        raise SystemExit(f"unsupported type {kind!r}")

    # -- declarations --------------------------------------------------------------
    def typed_dict(
        self, name: str, schema: dict[str, Any], base: str | None = None, doc: str | None = None
    ) -> None:
        properties: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        unknown = required - set(properties)
        if unknown:
            raise SystemExit(f"{name}: required keys without a property: {sorted(unknown)}")
        lines = [f"class {name}({base or 'TypedDict'}):"]
        lines.append(f'    """{clean_doc(doc or schema.get("description") or name)}"""')
        if properties:
            lines.append("")
        for prop, prop_schema in properties.items():
            if keyword.iskeyword(prop) or not prop.isidentifier():
                raise SystemExit(f"{name}.{prop}: not a Python identifier")
            description = prop_schema.get("description")
            if description:
                for line in description.splitlines():
                    lines.append(f"    #: {line}".rstrip())
            annotation = self.py_type(prop_schema)
            if prop not in required:
                annotation = f"NotRequired[{annotation}]"
            lines.append(f"    {prop}: {annotation}")
        self.classes[name] = "\n".join(lines) + "\n"
        self.class_bases[name] = base

    def schema(self, name: str, schema: dict[str, Any]) -> None:
        description = schema.get("description")
        if "oneOf" in schema:
            variants = []
            for variant in schema["oneOf"]:
                kind_enum = variant.get("properties", {}).get("kind", {}).get("enum", [])
                if len(kind_enum) != 1:
                    raise SystemExit(f"{name}: a oneOf variant without a single `kind`")
                variant_name = f"{name}{camel(kind_enum[0])}"
                self.typed_dict(variant_name, variant, doc=variant.get("description"))
                variants.append(variant_name)
            comment = f"#: {clean_doc(description)}\n" if description else ""
            self.unions.append(f"{comment}{name} = Union[{', '.join(variants)}]\n")
        elif "allOf" in schema:
            parts = schema["allOf"]
            bases = [ref_name(p["$ref"]) for p in parts if "$ref" in p]
            extras = [p for p in parts if "$ref" not in p]
            if len(bases) != 1 or len(extras) != 1:
                raise SystemExit(f"{name}: allOf must be one $ref and one object")
            self.typed_dict(name, extras[0], base=bases[0], doc=description)
        elif schema.get("type") == "object" or "properties" in schema:
            self.typed_dict(name, schema)
        else:
            comment = f"#: {clean_doc(description)}\n" if description else ""
            self.aliases.append(f"{comment}{name} = {self.py_type(schema)}\n")

    def render(self) -> str:
        for name, schema in self.schemas.items():
            self.schema(name, schema)
        out = [TYPES_HEADER]
        out.append("\n".join(self.aliases))
        out.append("\n")
        emitted: set[str] = set()

        def emit(name: str) -> None:
            if name in emitted:
                return
            base = self.class_bases[name]
            if base is not None:
                emit(base)
            emitted.add(name)
            out.append("\n" + self.classes[name] + "\n")

        for name in self.classes:
            emit(name)
        out.append("\n" + "\n".join(self.unions))
        names = sorted(list(self.schemas) + [n for n in self.classes if n not in self.schemas])
        out.append("\n__all__ = [\n" + "".join(f'    "{n}",\n' for n in names) + "]\n")
        text = "".join(out)
        return re.sub(r"\n{3,}", "\n\n\n", text).replace('"""\n\n\n\nimport', '"""\n\nimport')


def clean_doc(text: str | None) -> str:
    return " ".join((text or "").replace('"""', "'''").split())


# -- unasync ---------------------------------------------------------------------------
SYNC_HEADER = """\
# DO NOT EDIT: generated from _async_api.py by scripts/generate.py ("unasync").
# Edit _async_api.py and run `python clients/python/scripts/generate.py`.
"""

UNASYNC_REPLACEMENTS = [
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\baclose\b", "close"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAsyncTransport\b", "SyncTransport"),
    (r"\basync def\b", "def"),
    (r"\basync for\b", "for"),
    (r"\basync with\b", "with"),
    (r"\bawait ", ""),
    (r"\bAsync([A-Z]\w*)", r"\1"),
    (r"_async_api\b", "_sync_api"),
    (r"asynchronous", "synchronous"),
]


def unasync(source: str) -> str:
    text = source
    for pattern, replacement in UNASYNC_REPLACEMENTS:
        text = re.sub(pattern, replacement, text)
    return SYNC_HEADER + text


def outputs() -> dict[Path, str]:
    document = json.loads(OPENAPI.read_text(encoding="utf-8"))
    async_api = (PACKAGE / "_async_api.py").read_text(encoding="utf-8")
    return {
        PACKAGE / "types.py": TypesGenerator(document).render(),
        PACKAGE / "_sync_api.py": unasync(async_api),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    args = parser.parse_args()
    stale = []
    for path, text in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO)}")
    if stale:
        for path in stale:
            print(f"stale: {path.relative_to(REPO)}", file=sys.stderr)
        print("run: python clients/python/scripts/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
