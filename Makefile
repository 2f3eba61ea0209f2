# nodeimage: every target is a call to invoke inside the project's virtualenv.
# `make build` builds the default profile's image; `make test` runs the whole
# test suite (unit, integration, end-to-end build and boot).

VENV    ?= .venv
PY      := $(VENV)/bin/python
INVOKE  := $(VENV)/bin/invoke
PROFILE ?= k8s-1.17
APT_PACKAGES := $(shell grep -v '^\s*\#' deps/apt-packages.txt | tr '\n' ' ')

.PHONY: help deps venv doctor build test test-fast lint bench clean

help:
	@echo "make deps      install the Debian packages nodeimage needs (root)"
	@echo "make build     build the $(PROFILE) image (invoke build)"
	@echo "make test      run every test: lint, unit, integration, e2e build + boot"
	@echo "make test-fast run lint, unit and integration tests only"
	@echo "make doctor    check tools, KVM and disk (invoke doctor)"
	@echo "make bench     run the benchmarks in bench/"
	@echo "make clean     remove build outputs"

deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y $(APT_PACKAGES)

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

doctor: venv
	$(INVOKE) doctor

build: venv
	$(INVOKE) build --profile $(PROFILE)

test: venv
	$(INVOKE) test

test-fast: venv
	$(INVOKE) test --fast

lint: venv
	$(VENV)/bin/ruff check .
	shellcheck provision/*.sh .ci/run

bench: venv
	$(INVOKE) bench

clean: venv
	$(INVOKE) clean
