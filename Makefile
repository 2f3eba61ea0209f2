# nodeimage: every target is a call to invoke inside the project's virtualenv.
# `make build` builds the default profile's image; `make test` runs the whole
# test suite (unit, integration, end-to-end build and boot).

VENV    ?= .venv
PY      := $(VENV)/bin/python
INVOKE  := $(VENV)/bin/invoke
PROFILE ?= k8s-1.17

.PHONY: help deps venv doctor build test test-fast test-real lint bench clean

help:
	@echo "make deps      install the missing Debian packages of deps/apt-packages.txt (root)"
	@echo "make build     record missing digests (invoke lock), then build the $(PROFILE) image (invoke build)"
	@echo "make test      run every test: lint, unit, integration, e2e build + boot"
	@echo "make test-fast run lint, unit and integration tests only"
	@echo "make test-real build $(PROFILE) from upstream, boot a cluster, run every acceptance layer (internet)"
	@echo "make venv      create .venv with the pinned Python dependencies (pyproject.toml)"
	@echo "make doctor    check tools, KVM and disk (invoke doctor)"
	@echo "make lint      ruff and shellcheck over every file the project ships"
	@echo "make bench     run the benchmarks in bench/"
	@echo "make clean     remove build outputs (never cluster secrets; invoke clean --help)"
	@echo "make help      this list"

deps:
	bash deps/install.sh

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

doctor: deps venv
	$(INVOKE) doctor

# the lock step records, once, the digest of each artifact and container image the profile needs that the lock
# does not pin yet (trust on first use; review `git diff artifacts.lock.yaml`); the files it downloads stay in
# the cache for the build; with every digest and size recorded it does nothing
build: deps venv
	$(INVOKE) lock --profile $(PROFILE)
	$(INVOKE) build --profile $(PROFILE)

test: deps venv
	$(INVOKE) test

test-fast: deps venv
	$(INVOKE) test --fast

# the real upstream path (needs internet and, for a usable speed, KVM): lock, build, boot a cluster, all suites
test-real: deps venv
	$(INVOKE) test-real --profile $(PROFILE)

lint: venv
	$(VENV)/bin/ruff check .
	shellcheck provision/lib.sh provision/*/*.sh .ci/run

bench: venv
	$(INVOKE) bench

clean: venv
	$(INVOKE) clean
