"""The committed protobuf code is exactly what scripts/gen_protos.py produces."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> object:
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_protos"] = module
    spec.loader.exec_module(module)
    return module


def test_regenerating_changes_nothing(tmp_path: Path) -> None:
    generator = _generator()
    made = generator.generate(tmp_path)  # type: ignore[attr-defined]
    assert made, "no code was generated"
    committed_dir = ROOT / "protos" / "cairn" / "v1"
    generated = {path.name: path.read_bytes() for path in made}
    committed = {path.name: path.read_bytes() for path in committed_dir.glob("*_pb2*")}
    assert sorted(generated) == sorted(committed), "generated file set differs"
    stale = [name for name, data in generated.items() if committed[name] != data]
    assert not stale, f"run scripts/gen_protos.py: stale {stale}"


def test_every_architecture_service_has_a_contract() -> None:
    names = {path.stem for path in (ROOT / "protos" / "cairn" / "v1").glob("*.proto")}
    assert {"identity", "stacks", "updates", "secrets", "agent_pools", "copilot"} <= names
