# The two set-up commands of the README: `make study` and `make test`.
# Both create .venv and install the pinned requirements on a fresh machine first.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export DVC_SITE_CACHE_DIR := $(CURDIR)/.dvc/tmp/site-cache

.PHONY: study study-serial demo test install bench determinism
install: $(VENV)/.installed

# pty-chi is installed without its declared dependencies: they would pull torchvision (a CUDA build
# of torch, several GB) and developer tools (mypy, ruff, pytest pins); the runtime ones it imports
# (scipy, scikit-learn, pandas, tifffile) are in requirements.lock.txt, and its one use of
# torchvision is served by ptychostudy/torchvision_shim.py.
NODEPS := requirements.nodeps.txt

# Where torch comes from (docs/install.md): empty = the package index pip is configured with. On a machine whose
# index is the public PyPI, its Linux `torch==2.13.0` is the CUDA build (several GB of nvidia-* packages); the
# CPU-only build the lock was made with: `make install TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu`.
TORCH_INDEX_URL ?=
TORCH_PIN := $(shell grep -m1 '^torch==' requirements.lock.txt)

$(VENV)/.installed: pyproject.toml requirements.lock.txt requirements.nodeps.txt requirements.scaleout.txt requirements.test.txt
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX_URL),$(BIN)/pip install --disable-pip-version-check -q --index-url $(TORCH_INDEX_URL) "$(TORCH_PIN)")
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.lock.txt
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.scaleout.txt
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.test.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -r $(NODEPS)
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

# the stale stages several at a time (src/ptychostudy/scaleout.py: Parsl runs them, DVC records them);
# `make study-serial` is plain `dvc repro`, which gives the same dvc.lock
# With a DVC remote configured (docs/dvc.md), what it holds is pulled first and only the rest is computed.
study: install
	@if [ -n "$$(dvc remote list)" ]; then echo "make study: pulling what the DVC remote holds"; dvc pull --allow-missing || echo "make study: the pull failed (above): computing what is missing"; fi
	ptychostudy run
	ptychostudy verify
	dvc status

study-serial: install
	dvc repro
	ptychostudy verify
	dvc status

# the quick run: every stage on profiles/tiny.yaml in a new scratch workspace (a few minutes; prints where it is)
demo: install
	ptychostudy demo

# two workers, one test module each at a time: the end-to-end module (real dvc, stage processes) beside the rest
test: install
	python -m pytest -n 2 --dist loadfile

bench: install
	python bench/run.py

# Each stage kind rerun in fresh processes (tiny profile), outputs compared byte for byte:
# the "determinism" entry of bench/results.json (about 40 minutes on 2 cores).
determinism: install
	python bench/determinism.py
	python bench/run.py --render
