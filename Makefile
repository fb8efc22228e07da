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

.PHONY: setup demo test bench server worker clean chromium doc-sites

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

setup: $(STAMP) $(BLOCKLISTS)

demo: setup
	$(BIN)/crawl2chat demo

test: setup chromium doc-sites
	$(BIN)/python -m pytest

# The browser test drives the Prefect UI in Debian's chromium (no browser download at run time).
chromium:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

# Real documentation sites, one per HTML generator, for the curate agreement corpus (tests and
# benchmarks/curate.py): DocBook (postgresql-doc-15, maint-guide), Texinfo (diffutils-doc,
# gnu-standards), Doxygen, Docutils, Sphinx (python-requests-doc, python-jinja2-doc), javadoc
# (junit4-doc), markdown (nodejs-doc), AsciiDoc (git-doc), and man2html for man pages.
# About 14 MB of downloads; see tasks/doc_sites.py.
DOC_PACKAGES := postgresql-doc-15 maint-guide diffutils-doc gnu-standards doxygen-doc docutils-doc \
  python-requests-doc python-jinja2-doc junit4-doc nodejs-doc git-doc man2html-base
doc-sites:
	@[ "$$(dpkg-query -W -f='$${Status}\n' $(DOC_PACKAGES) 2>/dev/null | grep -c ' ok installed$$')" = $(words $(DOC_PACKAGES)) ] || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(DOC_PACKAGES); }

bench: setup doc-sites
	$(BIN)/python -m benchmarks

server: setup
	$(BIN)/crawl2chat server start

worker: setup  # against PREFECT_API_URL, else the server `make server` starts
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:$${CRAWL2CHAT_PREFECT_PORT:-4200}/api} $(BIN)/prefect worker start --pool $(or $(POOL),cpu)

clean:
	-$(BIN)/crawl2chat server stop
	rm -rf lake .prefect
