# Pressroom: everything a fresh machine needs is set up by these targets themselves.
# Only Python 3.11+ and make are assumed; uv is installed into .tools/ when missing.

PYTHON ?= python3
UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
PYTEST_ARGS ?=
# The integration pass runs in this many processes (pytest-xdist), each with its own
# embedded PostgreSQL and broker; a test module stays on one worker (module fixtures).
TEST_WORKERS ?= 2

.PHONY: run test test-unit test-integration lint bench schemas up sync clean token

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: uv.lock pyproject.toml $(wildcard */pyproject.toml services/*/pyproject.toml) | $(UV)
	$(UV) sync --frozen --all-packages
	@touch $@

sync: $(VENV)/.synced

run: sync
	$(VENV)/bin/pressroom dev

test: sync
	$(VENV)/bin/pytest -m "unit or not (integration or e2e or slow)" -q $(PYTEST_ARGS)
	$(VENV)/bin/pytest -m "integration or e2e or slow" -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-unit: sync
	$(VENV)/bin/pytest -m "unit or not (integration or e2e or slow)" -q $(PYTEST_ARGS)

test-integration: sync
	$(VENV)/bin/pytest -m "integration or e2e or slow" -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: sync
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: sync
	$(VENV)/bin/python -m bench.pipeline
	$(VENV)/bin/python -m bench.webhook --slow-share 0
	$(VENV)/bin/python -m bench.webhook
	$(VENV)/bin/python -m bench.media
	$(VENV)/bin/python -m bench.publishing
	$(VENV)/bin/python -m bench.publishing --platform fake
	$(VENV)/bin/python -m bench.approval_audit
	$(VENV)/bin/python -m bench.approval_escalations
	$(VENV)/bin/python -m bench.analytics
	$(VENV)/bin/python -m bench.analytics_advisor
	$(VENV)/bin/python -m bench.idle
	@if command -v wrk >/dev/null; then \
		$(VENV)/bin/python -m bench.gateway && $(VENV)/bin/python -m bench.http_stack; \
	else echo "wrk is not installed: skipping the gateway and HTTP stack benchmarks"; fi

schemas: sync
	$(VENV)/bin/python -m pressroom_contracts schemas

up:
	docker compose up --build

clean:
	rm -rf $(VENV) .tools var .pytest_cache .mypy_cache .ruff_cache

# A development token for the local stack: make token BRAND=<uuid> ROLE=manager
BRAND ?=
ROLE ?= admin
token: sync
	$(VENV)/bin/pressroom token $(if $(BRAND),--brand $(BRAND)) --role $(ROLE)
