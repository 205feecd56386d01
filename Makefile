# meshgate: `make demo` starts the quickstart, `make test` runs the tests.
# Each target installs what it needs into ./.venv (and ./.venv-mlserver for the MLServer tests).

PYTHON ?= python3
VENV ?= .venv
MLSERVER_VENV ?= .venv-mlserver
BIN := $(VENV)/bin

.PHONY: demo test install lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[backend,dev]'
	touch $@

$(MLSERVER_VENV)/.installed:
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/pip install -q 'mlserver==1.7.1'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/meshgate up examples/quickstart.yaml

lint: $(BIN)/.installed
	$(BIN)/ruff check gateway policies backends shadow telemetry chaos tests bench
	$(BIN)/mypy

# pytest's exit code 5 ("no tests ran") is a failure here, never a silent success.
test: $(BIN)/.installed $(MLSERVER_VENV)/.installed lint
	$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

bench: $(BIN)/.installed
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(MLSERVER_VENV) *.egg-info
