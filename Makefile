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

.PHONY: setup demo test test-fast lint bench server worker clean system-packages fasttext-trainer fineweb-extractor

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

# FineWeb's extractor (trafilatura 1.11), whose text FineWeb's filters judge, beside the project's
# trafilatura 2.x (tasks/curate/fineweb_extractor.py).
FINEWEB_EXTRACTOR := .cache/trafilatura-1.11/trafilatura-1.11.0.dist-info
$(FINEWEB_EXTRACTOR): tasks/curate/fineweb_extractor.py | $(STAMP)
	$(BIN)/crawl2chat install-fineweb-extractor
fineweb-extractor: $(FINEWEB_EXTRACTOR)

setup: $(STAMP) $(BLOCKLISTS) $(FASTTEXT_TRAINER) $(FINEWEB_EXTRACTOR)

demo: setup system-packages
	$(BIN)/crawl2chat demo

test: setup system-packages lint
	$(BIN)/python -m pytest

# The quick loop: no Prefect server, no browser, no end-to-end stack, nothing marked slow.
test-fast: setup system-packages
	$(BIN)/python -m pytest -m "not e2e and not server and not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Debian packages the tests, the demo and the benchmarks use, installed together when any is missing:
# - chromium: the browser tests drive the Prefect UI and the chat page (no browser download at run time);
# - bubblewrap: the code tool's sandbox (models/sandbox.py) runs model-written Python under it;
# - real documentation sites, one per HTML generator, for the curate agreement corpus (tests and
#   benchmarks/curate.py, see tasks/doc_sites.py; about 14 MB): DocBook (postgresql-doc-15,
#   maint-guide), Texinfo (diffutils-doc, gnu-standards), Doxygen, Docutils, Sphinx
#   (python-requests-doc, python-jinja2-doc), javadoc (junit4-doc), markdown (nodejs-doc),
#   AsciiDoc (git-doc), and man2html for man pages.
DOC_PACKAGES := postgresql-doc-15 maint-guide diffutils-doc gnu-standards doxygen-doc docutils-doc \
  python-requests-doc python-jinja2-doc junit4-doc nodejs-doc git-doc man2html-base
SYSTEM_PACKAGES := chromium bubblewrap $(DOC_PACKAGES)
system-packages:
	@[ "$$(dpkg-query -W -f='$${Status}\n' $(SYSTEM_PACKAGES) 2>/dev/null | grep -c ' ok installed$$')" = $(words $(SYSTEM_PACKAGES)) ] || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES); }
	@# Ubuntu 24.04 (GitHub's runners) forbids unprivileged user namespaces through AppArmor, which
	@# bubblewrap needs: lift that, and say so.
	@if [ "$$(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns 2>/dev/null)" = 1 ]; then \
	  echo "setting kernel.apparmor_restrict_unprivileged_userns=0 for the sandbox (bubblewrap)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO sysctl -q -w kernel.apparmor_restrict_unprivileged_userns=0; fi

bench: setup system-packages
	$(BIN)/python -m benchmarks

server: setup
	$(BIN)/crawl2chat server start

worker: setup  # against PREFECT_API_URL, else the server `make server` starts
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:$${CRAWL2CHAT_PREFECT_PORT:-4200}/api} $(BIN)/prefect worker start --pool $(or $(POOL),cpu)

clean:
	-$(BIN)/crawl2chat server stop
	rm -rf lake .prefect
