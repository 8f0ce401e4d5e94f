# hcl_plugin — the two commands: `make test` and `make demo`.
# `make test` creates .venv from nothing (idempotent: re-runs only when pyproject.toml or the
# constraints change) and runs the whole test suite; `make test-quick` skips tests marked slow.
# With the mmselfsup/mmdet extras it first builds MMCV 2.0.1 with compiled ops into a wheel cache
# (requirements/build_mmcv.sh: ~13 min on 2 cores, once per machine; later runs reuse the wheel).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS := requirements/constraints.txt
comma := ,
EXTRAS ?= test,data,lightly,eval,uhml,mmselfsup,mmdet
DEMO_EXTRAS := data,lightly,eval
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
PYTEST_ARGS ?=

.PHONY: venv test test-quick demo bench bench-transfer clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS) requirements/build_mmcv.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) torch torchvision numpy setuptools wheel
	case ",$(EXTRAS)," in \
	  *,mmselfsup,*|*,mmdet,*) mmcv_wheels=$$(requirements/build_mmcv.sh $(PY)) && \
	    $(PY) -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) \
	      --find-links "$$mmcv_wheels" --only-binary mmcv -e ".[$(EXTRAS)]" ;; \
	  *) $(PY) -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e ".[$(EXTRAS)]" ;; \
	esac
	touch $@

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

test-quick: venv
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# Main job: pretrain MoCo-v2 + HCL on the embedded data set (<= 6 min of training), analyse it
# against a random-init control, write outputs/demo/ (checkpoint, metrics.json, plots, report.md).
# (needs only the Lightly extras: no MMCV build)
demo:
	$(MAKE) venv EXTRAS=$(DEMO_EXTRAS)
	$(PY) tools/demo.py --out outputs/demo $(DEMO_ARGS)

bench: venv
	$(PY) benchmarks/bench_loss.py --out outputs/bench_loss.json
	$(PY) benchmarks/bench_views.py --out outputs/bench_views.json
	$(PY) benchmarks/bench_train_step.py --framework both --out outputs/bench_train_step

clean-venv:
	rm -rf $(VENV)

bench-transfer: venv
	PYTHON=$(PY) tools/benchmark_transfer.sh
