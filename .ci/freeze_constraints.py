"""Write constraints.txt: the exact version of every distribution this project pulls in, as installed here.

Walks the requirements in pyproject.toml (extras included) through each installed distribution's metadata
and pins what is installed: the direct dependencies and all they need, so that a fresh clone installs the
tested set instead of whatever is newest. torch and what only torch needs (its CUDA libraries, triton,
sympy, networkx, …) are left out on purpose: the Makefile keeps a torch that is already importable (a
CUDA build, say), and a pin on torch or on one of its exact dependencies would make pip replace it.
Build tools (pip, setuptools, wheel) are left out too. Run after a tested upgrade: `make constraints`.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
NOT_PINNED = {"torch", "pip", "setuptools", "wheel"}  # torch: kept as the user has it (and not walked into)

HEADER = """\
# The tested versions (Python 3.11, torch 2.13.0 CPU): `make setup` installs with `pip install -c constraints.txt`.
# torch is not pinned, nor what only torch needs: a torch already on the machine (e.g. a CUDA build) is kept.
# Regenerate after a tested upgrade with `make constraints` (.ci/freeze_constraints.py).
"""


def closure() -> dict[str, str]:
    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset]] = set()
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    roots = project["dependencies"] + [r for group in project.get("optional-dependencies", {}).values() for r in group]
    todo = [(Requirement(r), ()) for r in roots]
    while todo:
        req, extras = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (extras or ("",))):
            continue
        name = canonicalize_name(req.name)
        if name in NOT_PINNED or (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            sys.exit(f"{req} is required but not installed: run `make setup` first")
        pins[name] = dist.version
        todo += [(Requirement(r), tuple(req.extras)) for r in dist.requires or []]
    return pins


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "constraints.txt")
    out.write_text(HEADER + "".join(f"{n}=={v}\n" for n, v in sorted(closure().items())))
    print(f"wrote {out}")
