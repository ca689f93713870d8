"""The generated files match their sources: types.py the OpenAPI document, _sync_api.py
the asynchronous namespaces. Regenerate with ``python scripts/generate.py``."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from picloud import types

ROOT = Path(__file__).resolve().parents[1]
OPENAPI = ROOT.parents[1] / "docs" / "openapi.json"


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "scripts" / "generate.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["generate"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["types.py", "_sync_api.py"])
def test_generated_file_is_fresh(name: str) -> None:
    outputs = {path.name: text for path, text in load_generator().outputs().items()}
    committed = (ROOT / "src" / "picloud" / name).read_text(encoding="utf-8")
    assert committed == outputs[name], (
        f"src/picloud/{name} is stale: run `python clients/python/scripts/generate.py`"
    )


def test_every_object_schema_has_a_typed_dict_with_its_keys() -> None:
    """A second look from the other side: walk the document, check the module."""
    schemas = json.loads(OPENAPI.read_text())["components"]["schemas"]
    assert len(schemas) == 84
    for name, schema in schemas.items():
        assert hasattr(types, name), name
        parts = [schema]
        if "allOf" in schema:
            base = schema["allOf"][0]["$ref"].rsplit("/", 1)[1]
            parts = [schemas[base], schema["allOf"][1]]
        elif "oneOf" in schema or "properties" not in schema:
            continue
        required = set().union(*(set(p.get("required", [])) for p in parts))
        keys = set().union(*(set(p.get("properties", {})) for p in parts))
        cls = getattr(types, name)
        assert set(cls.__required_keys__) == required, name
        assert set(cls.__required_keys__) | set(cls.__optional_keys__) == keys, name


def test_generator_notices_a_changed_document(tmp_path: Path) -> None:
    """The freshness check can fail: a document with one more property renders differently."""
    generator = load_generator()
    document = json.loads(OPENAPI.read_text())
    before = generator.TypesGenerator(document).render()
    document["components"]["schemas"]["Topic"]["properties"]["brand_new"] = {"type": "string"}
    after = generator.TypesGenerator(document).render()
    assert before != after
    assert "brand_new: NotRequired[str]" in after
