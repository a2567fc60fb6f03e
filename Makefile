# spacehost — `make up` runs it on this machine; `make test` installs what the tests need and runs them all.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
UV     := $(shell command -v uv 2>/dev/null)
LINTED := core state sandbox builder scheduler proxy zerogpu hub spacehost sdk_templates deploy tests bench setup.py

.PHONY: up test venv system-deps lint bench clean cluster

# `make up` installs the server's dependencies and the [client] extra (gradio_client, huggingface_hub), nothing
# else; the cluster, the tests and the benchmarks add their extras (pyproject.toml) on top.
$(VENV)/.installed: pyproject.toml setup.py proxy/_lane.c
	@test -n "$(UV)" || $(PYTHON) -m pip install -q uv
	uv venv -q --allow-existing -p $(PYTHON) $(VENV)
	VIRTUAL_ENV=$(VENV) uv pip install -q -e '.[client]'
	@touch $@

EXTRAS_cluster := client,cluster
EXTRAS_test    := client,cluster,test
EXTRAS_bench   := client,bench
$(VENV)/.installed-%: $(VENV)/.installed
	VIRTUAL_ENV=$(VENV) uv pip install -q -e '.[$(EXTRAS_$*)]'
	@touch $@

venv: $(VENV)/.installed

up: venv
	deploy/install-runtime-deps.sh
	$(VENV)/bin/spacehost up

cluster: $(VENV)/.installed-cluster
	deploy/cluster-up.sh

system-deps:
	deploy/install-test-deps.sh

# Two pytest processes side by side: most e2e time is spent waiting on servers, apps and builds, so two streams
# finish well before one on these 2 cores. The cluster, docker and runtime-contract suites in one, everything
# else in the other (each with its own temp dir); the first's output follows the second's.
SUITE_A := tests/cluster tests/docker tests/contract
test: lint system-deps
	@rm -f .test-a.log; \
	$(VENV)/bin/pytest -q -p no:cacheprovider --basetemp=/tmp/spacehost-tests-a $(SUITE_A) > .test-a.log 2>&1 & a=$$!; \
	$(VENV)/bin/pytest -q -p no:cacheprovider --basetemp=/tmp/spacehost-tests-b $(addprefix --ignore=,$(SUITE_A)) tests; b=$$?; \
	wait $$a; ra=$$?; echo "==> $(SUITE_A)"; cat .test-a.log; \
	echo "==> tests: $$( [ $$b = 0 ] && echo passed || echo FAILED ); $(SUITE_A): $$( [ $$ra = 0 ] && echo passed || echo FAILED )"; \
	exit $$(( b || ra ))

# Fails on any finding: ruff over all our code, mypy --strict over every package (config: pyproject.toml).
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/mypy

bench: $(VENV)/.installed-bench
	$(PY) bench/deploy.py
	$(PY) bench/proxy.py
	$(PY) bench/zerogpu.py
	$(PY) bench/placement.py
	$(PY) bench/density.py

clean:
	rm -rf $(VENV) .spacehost
