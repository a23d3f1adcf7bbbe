# Two commands on a fresh machine:
#   make demo   set up, generate a demo delivery, run the whole pipeline on local Spark
#   make test   set up and run the test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup demo test smoke-versions dist bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/triage demo

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# One run per supported pyspark line, each in a fresh venv from the package's ranges (README: Tested versions).
smoke-versions: setup
	$(BIN)/python -m tests.versions.smoke

dist: setup
	$(BIN)/pip wheel -q --no-deps -w dist .

clean:
	rm -rf build dist *.egg-info triage-output demo-delivery
