# Set-up, tests and the main job. Everything runs inside the project's own virtual environment.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
MEDKD := $(VENV)/bin/medkd

.PHONY: setup test test-fast run teacher clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[train,dev,federated]'
	touch $@

## The whole test suite (the real data in ../shared/data is used when present).
test: setup
	$(PY) -m pytest -q

## Tests without the slow marker.
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

## The main job on its embedded default: every stage on synthetic phantoms (runs/demo).
run: setup
	$(MEDKD) demo

clean:
	rm -rf $(VENV) .pytest_cache

## The stand-in medical teacher, trained from scratch on ../shared/data (about 45 minutes on 2 cores).
DATA ?= ../shared/data
RUNS ?= runs
teacher: setup
	$(MEDKD) adapt --recipe recipes/teacher-stand-in.yaml --data $(DATA) --out $(RUNS)/stand-in/teacher --resume
