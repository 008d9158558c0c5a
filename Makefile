# `make demo`: set up (venv, packages, sandbox tool) and run the grading demo on the bundled data.
# `make test`: set up and run the project's tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test lint bench clean

# Course machines keep the full data set and offline weights in ../shared: use them when present
# (an explicit CMP_FACADE_ROOT / VGG16_WEIGHTS in the environment wins). Never copied.
SHARED := $(abspath ../shared)
ifneq ($(wildcard $(SHARED)/datasets/cmp_facade/base),)
export CMP_FACADE_ROOT ?= $(SHARED)/datasets/cmp_facade
endif
ifneq ($(wildcard $(SHARED)/weights/vgg16_imagenet1k_v1_features.pth),)
export VGG16_WEIGHTS ?= $(SHARED)/weights/vgg16_imagenet1k_v1_features.pth
endif

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup.sh
	touch $@

demo: setup
	$(BIN)/python -m autograder demo

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check assignment_lib autograder tests benchmarks

bench: setup
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf build .pytest_cache
