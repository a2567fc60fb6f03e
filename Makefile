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
	@# the proxy's fast lane is C (setup.py): a fresh Debian has no compiler; without one it is not built and the
	@# proxy takes its Python path (tests/proxy/test_fast_lane.py then fails: it needs the lane)
	@command -v cc >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  echo "==> installing gcc (the proxy's fast lane)" && export DEBIAN_FRONTEND=noninteractive && \
	  apt-get update -q >/dev/null && apt-get install -y -q gcc >/dev/null; } || \
	  echo "no C compiler: the proxy's fast lane is not built (its Python path serves)"
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

# Random order (pytest-random-order: modules shuffled, tests shuffled within each), a new seed each run, printed
# first: `make test SEED=N` runs that order again.
test: lint system-deps
	@seed=$${SEED:-$$(shuf -i 1-99999999 -n 1)}; \
	echo "make test: random order, seed $$seed (run this order again: make test SEED=$$seed)"; \
	$(VENV)/bin/pytest -q --random-order-bucket=module --random-order-seed=$$seed tests

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
	$(PY) bench/gradio_traffic.py
	$(PY) bench/cluster.py
	$(PY) bench/hostile.py
	$(PY) bench/pages.py
	$(PY) bench/web_ui.py

clean:
	rm -rf $(VENV) .spacehost
