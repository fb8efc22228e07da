# Two commands do everything from a fresh clone: `make demo` and `make test`.
# The venv gets the pinned CPU torch wheel first (from local disk where it lies there), then the project.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH ?= torch==2.13.0
export OMP_NUM_THREADS ?= 1
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup demo test test-fast lint bench server worker clean chromium fasttext-trainer bubblewrap

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# FineWeb's URL blocklists, from the datatrove wheel on PyPI (no run-time downloads).
BLOCKLISTS := .cache/blocklists/domains.npy
$(BLOCKLISTS): | $(STAMP)
	$(BIN)/crawl2chat fetch-blocklists

# The fastText trainer for `crawl2chat quality train`, in a folder of its own: fasttext-numpy2
# and fasttext-predict (a project dependency) both install a module named `fasttext`.
FASTTEXT_TRAINER := .cache/fasttext-trainer/fasttext/__init__.py
$(FASTTEXT_TRAINER): | $(STAMP)
	$(BIN)/pip install --quiet --no-deps --target .cache/fasttext-trainer fasttext-numpy2==0.10.4
fasttext-trainer: $(FASTTEXT_TRAINER)

setup: $(STAMP) $(BLOCKLISTS) $(FASTTEXT_TRAINER)

demo: setup bubblewrap
	$(BIN)/crawl2chat demo

test: setup chromium bubblewrap lint
	$(BIN)/python -m pytest

# The quick loop: no Prefect server, no browser, no end-to-end stack, nothing marked slow.
test-fast: setup
	$(BIN)/python -m pytest -m "not e2e and not server and not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The browser test drives the Prefect UI in Debian's chromium (no browser download at run time).
chromium:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

# The code tool's sandbox (models/sandbox.py) runs model-written Python under Debian's bubblewrap.
# Ubuntu 24.04 (GitHub's runners) forbids unprivileged user namespaces through AppArmor: lift that.
bubblewrap:
	@command -v bwrap >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends bubblewrap; }
	@if [ "$$(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns 2>/dev/null)" = 1 ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO sysctl -q -w kernel.apparmor_restrict_unprivileged_userns=0; fi

bench: setup
	$(BIN)/python -m benchmarks

server: setup
	$(BIN)/crawl2chat server start

worker: setup  # against PREFECT_API_URL, else the server `make server` starts
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:$${CRAWL2CHAT_PREFECT_PORT:-4200}/api} $(BIN)/prefect worker start --pool $(or $(POOL),cpu)

clean:
	-$(BIN)/crawl2chat server stop
	rm -rf lake .prefect
