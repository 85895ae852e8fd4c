# The two set-up commands of the README: `make study` and `make test`.
# Both create .venv and install the pinned requirements on a fresh machine first.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export DVC_SITE_CACHE_DIR := $(CURDIR)/.dvc/tmp/site-cache

.PHONY: study test install
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.lock.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

study: install
	dvc repro
	ptychostudy verify
	dvc status

test: install
	python -m pytest
