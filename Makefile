# The two commands a newcomer runs: `make demo` (set up, run the course) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo course test lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install when the dependencies change. constraints.txt pins what CI tests; pyproject keeps ranges.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev,vision,nlp,rl,rl-extras,export,serve,notebook]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/dlkit course --quick

course: setup
	$(BIN)/dlkit course

test: setup
	$(BIN)/pytest -n 2 --dist loadfile

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf runs .pytest_cache .ruff_cache
