# Paperboy: `make run` starts the bot, `make test` installs test tools and runs the suite.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test install bench clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is needed ($(PYTHON) not found; set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/paperboy run

test: $(STAMP)
	$(PY) tests/ensure_postgres.py
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/commands.py
	$(PY) benchmarks/fanout.py
	$(PY) benchmarks/feedback.py
	$(PY) benchmarks/relevance.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
