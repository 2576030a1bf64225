# Two commands on a fresh machine: `make demo` and `make test`. Both set up what they need
# (idempotent, fast the second time) and then run.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml provision/hosted/requirements.txt | md5sum | cut -c1-8)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CHROMIUM := /usr/bin/chromium

ORTHANC := /usr/sbin/Orthanc

.PHONY: demo test setup chromium ohif orthanc bench clean minimums

setup: $(STAMP)

$(STAMP): pyproject.toml provision/hosted/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	# The hosted viewer's pinned dependencies, so its tests run what Cloud Run would install.
	$(PY) -m pip install -q -r provision/hosted/requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

chromium: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

ohif: $(STAMP)
	@if [ -f provision/ohif/fetch.py ]; then $(PY) -m provision.ohif.fetch; fi

demo: $(STAMP)
	$(VENV)/bin/provision demo

test: $(STAMP) chromium ohif orthanc minimums
	$(VENV)/bin/ruff check provision tests bench tools
	$(VENV)/bin/mypy
	# The suite starts many Python processes (pytest workers, the CLI, emulators, the hosted app): they
	# cache bytecode (outside the tree) even where the environment says not to, as this machine's does
	# (PYTHONDONTWRITEBYTECODE=1 made each worker rewrite every test module's asserts, 3.7 s, and each
	# process compile the package again: the suite took 195 s instead of 184 s).
	env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=$(CURDIR)/build/pycache PROVISION_NO_SKIP=1 \
	    $(VENV)/bin/pytest -q -rs --durations=10 -n 4 --dist worksteal

# The declared lower bounds are true: every runtime dependency pinned to its minimum
# (tools/minimum_requirements.py) must install together, and the demo must pass on them.
MIN_VENV := .venv-min
MIN_STAMP := $(MIN_VENV)/.installed-$(shell cat pyproject.toml provision/hosted/requirements.txt Makefile | md5sum | cut -c1-8)

$(MIN_STAMP): pyproject.toml tools/minimum_requirements.py provision/hosted/requirements.txt
	rm -rf $(MIN_VENV) && python3 -m venv $(MIN_VENV)
	python3 tools/minimum_requirements.py > $(MIN_VENV)/minimums.txt
	$(MIN_VENV)/bin/pip install -q -r $(MIN_VENV)/minimums.txt
	# The demo deploys the hosted viewer, which the emulator runs with this Python: its own pinned
	# requirements (what Cloud Run installs) go in too, and win where they pin a package higher.
	$(MIN_VENV)/bin/pip install -q -r provision/hosted/requirements.txt
	touch $(MIN_STAMP)

minimums: $(MIN_STAMP)
	$(MIN_VENV)/bin/pip install -q --no-deps --force-reinstall .   # this checkout, as it is now
	rm -rf $(MIN_VENV)/demo && mkdir -p $(MIN_VENV)/demo
	cd $(MIN_VENV)/demo && ../bin/provision demo --out out > demo.log 2>&1 || { tail -30 demo.log; exit 1; }
	@echo "minimum versions: the demo passed on $$(tr '\n' ' ' < $(MIN_VENV)/minimums.txt)"

orthanc: $(ORTHANC)

# Orthanc is a DICOMweb peer for tests/clients/test_orthanc.py and the benchmarks; it listens on
# every interface, so both run it in a loopback-only network namespace (unshare, ip from iproute2).
$(ORTHANC):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq orthanc orthanc-dicomweb iproute2

bench: $(STAMP) orthanc
	for b in bench/[!_]*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(MIN_VENV) out .pytest_cache build/pycache
