# Two commands set everything up on a fresh machine:
#   make serve   - install facetrace and run the server with its web UI (embedded SQLite + FAISS)
#   make test    - install everything the tests need and run the whole test suite (lint, types, tests)
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup serve test lint bench clean

# The product alone (make serve), then the test and benchmark tools on top (make test).
$(VENV)/.product: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.product
	$(VENV)/bin/pip install -q -e '.[dev]'
	# The benchmark peer; its dlib requirement is met by dlib-bin, hence --no-deps.
	$(VENV)/bin/pip install -q --no-deps face_recognition==1.2.3
	touch $@

setup: $(VENV)/.installed

serve: $(VENV)/.product
	$(VENV)/bin/facetrace serve --host $(HOST) --port $(PORT)

lint: setup
	$(VENV)/bin/ruff check facetrace tests bench fuzz
	$(VENV)/bin/ruff format --check facetrace tests bench fuzz
	$(VENV)/bin/mypy facetrace
	$(VENV)/bin/lint-imports  # the layering of docs/architecture.md (contracts in pyproject.toml)

test: setup
	eval "$$(scripts/services.sh start)" && $(MAKE) --no-print-directory lint && \
	  $(VENV)/bin/pytest -q -p no:cacheprovider --durations=25 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
