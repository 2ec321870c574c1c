PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint demo venv clean bench pcmk-deps

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -m compileall -q src  # daemons start faster (also where PYTHONDONTWRITEBYTECODE is set)
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# the Pacemaker stack's tests need the Debian packages (installed when missing; needs root, as CI is)
test: lint pcmk-deps
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/clovm demo

bench: $(STAMP)
	$(BIN)/python bench/sim_speed.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

pcmk-deps:
	@if [ "$$(id -u)" = 0 ]; then tools/pcmk-deps; else echo "pcmk-deps: not root: the Pacemaker tests will say what is missing"; fi
