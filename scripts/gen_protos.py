"""Generate the committed protobuf/gRPC code and stubs under protos/cairn/v1/.

Run from anywhere: `python scripts/gen_protos.py [--out DIR]`. The repository root is the
include path, so generated imports read `protos.cairn.v1...`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos" / "cairn" / "v1"


def generate(out: Path) -> list[Path]:
    """Compile every .proto into `out` (mirroring protos/cairn/v1) and return the files made."""
    from grpc_tools import protoc

    protos = sorted(PROTO_DIR.glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    plugins = []
    for name in ("protoc-gen-mypy", "protoc-gen-mypy_grpc"):
        # Prefer the plugin installed beside this interpreter (a venv need not be on PATH).
        local = Path(sys.executable).parent / name
        found = str(local) if local.exists() else shutil.which(name)
        if found is None:
            raise SystemExit(f"{name} not found: install the dev extra (mypy-protobuf)")
        plugins.append(f"--plugin={name}={found}")
    args = [
        "grpc_tools.protoc",
        *plugins,
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *[str(p.relative_to(ROOT)) for p in protos],
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    made = sorted((out / "protos" / "cairn" / "v1").glob("*_pb2*"))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT, help="output root (default: repo)")
    args = parser.parse_args()
    made = generate(args.out)
    for path in made:
        print(path.relative_to(args.out))


if __name__ == "__main__":
    sys.exit(main())
