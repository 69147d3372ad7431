"""constraints.txt: the tested versions a fresh clone installs (Makefile: pip install -c constraints.txt).

Every dependency of pyproject.toml (extras included) is pinned exactly, inside the range pyproject allows,
and torch is not: a pin on torch (or on what only torch needs) would make pip replace a user's CUDA build."""

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (the tested version)

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras]


def test_every_dependency_is_pinned_inside_its_range_and_torch_is_not():
    pins = _pins()
    for req in _requirements():
        name = canonicalize_name(req.name)
        if name == "torch":
            continue
        assert name in pins, f"{req.name} is a dependency without a tested version in constraints.txt (run `make constraints`)"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} is outside {req}"
    assert not {n for n in pins if n == "torch" or n.startswith(("nvidia-", "triton"))}
    assert "torch" in {canonicalize_name(r.name) for r in _requirements()}


def test_the_makefile_installs_with_the_constraints():
    make = (ROOT / "Makefile").read_text()
    assert '-c constraints.txt -e ".[dev,ray]"' in make and '-c constraints.txt "torch==' in make
    assert "$(STAMP): pyproject.toml constraints.txt" in make
