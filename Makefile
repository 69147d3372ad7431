# Two commands for a fresh clone (see README): `make run` and `make test`.
# Each sets up .venv on first use (idempotent; a no-op the second time unless pyproject.toml changed).
# The venv sees system site-packages so that an existing torch (e.g. a CUDA build) is kept;
# only where no torch is importable is the tested CPU build, torch 2.13.0, installed.
# Everything else is installed at the tested versions of constraints.txt, which pins neither torch nor
# what only torch needs, so pip never replaces the torch it found (`make constraints` regenerates it).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: run probes test setup constraints clean

# The main job: the app at http://127.0.0.1:8050 on the organism, store runs/store (it computes the
# default sweep on first start, with progress in the page). Ctrl-C stops it.
run: $(STAMP)
	$(VENV)/bin/workbench app --store runs/store

# The probe suite demo: 2,000 seeded probes, their counts and contact sheet, in runs/demo-probes.
probes: $(STAMP)
	$(VENV)/bin/workbench probes make --out runs/demo-probes --n 2000 --seed 0 --force
	$(VENV)/bin/workbench probes show runs/demo-probes

test: $(STAMP)
	$(PY) -m pytest

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || { echo "installing torch 2.13.0 (CPU)"; $(PIP) -c constraints.txt "torch==2.13.0"; }
	$(PIP) -c constraints.txt -e ".[dev,ray]"
	@touch $(STAMP)

# After upgrading a dependency and passing `make test`: pin what is installed now as the tested set.
constraints: $(STAMP)
	$(PY) .ci/freeze_constraints.py constraints.txt

clean:
	rm -rf $(VENV) runs .pytest_cache
