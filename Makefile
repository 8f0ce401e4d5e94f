# hcl_plugin — the two commands: `make test` and `make demo`.
# `make test` creates .venv from nothing (idempotent: re-runs only when pyproject.toml or the
# constraints change) and runs the whole test suite; `make test-quick` skips tests marked slow.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS := requirements/constraints.txt
comma := ,
EXTRAS ?= test,data,lightly,eval,uhml
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
PYTEST_ARGS ?=

.PHONY: venv test test-quick demo bench clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $@

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

test-quick: venv
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# Main job: pretrain MoCo-v2 + HCL on the embedded data set (<= 7 min of training), analyse it
# against a random-init control, write outputs/demo/ (checkpoint, metrics.json, plots, report.md).
demo: venv
	$(PY) tools/demo.py --out outputs/demo $(DEMO_ARGS)

bench: venv
	$(PY) benchmarks/bench_loss.py --out outputs/bench_loss.json
	$(PY) benchmarks/bench_views.py --out outputs/bench_views.json
	$(PY) benchmarks/bench_moco_step.py --out outputs/bench_moco_step.json

clean-venv:
	rm -rf $(VENV)
