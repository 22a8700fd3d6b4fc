"""Generate the Python package `ess.v1` into clients/python from proto/ (`make proto`)."""

import argparse
import pathlib
import sys

import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = sorted((ROOT / "proto").rglob("*.proto"))
HEADER = "# Generated from proto/ by `make proto`. Do not edit.\n"


def generate(out: pathlib.Path) -> None:
    """Write guard_pb2.py, guard_pb2.pyi and guard_pb2_grpc.py under out/ess/v1/."""
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{ROOT / 'proto'}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *map(str, PROTOS),
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    for package in {p.parent.relative_to(ROOT / "proto") for p in PROTOS}:
        for level in range(1, len(package.parts) + 1):
            init = out.joinpath(*package.parts[:level], "__init__.py")
            init.write_text(HEADER)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "clients" / "python")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
