# Clarion: `make run` to try it, `make test` to check it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Tests and benchmarks run on PostgreSQL and Redis on loopback; override to point elsewhere.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/clarion
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
# Required outside trial mode; tests and benchmarks sign nothing anyone else reads.
TEST_SECRET_KEY ?= clarion-tests-only-not-a-secret

.PHONY: run test lint format bench bench-quick clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

## run: set up, migrate, load the demo catalog and serve web, workers and beat on :8000
run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py sync_catalog demo/catalog.yaml
	$(BIN)/python manage.py bootstrap_demo
	$(BIN)/honcho start -f Procfile

## test: lint, then the whole suite against PostgreSQL and Redis
test: $(STAMP) lint
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) DB_CONN_MAX_AGE=0 \
	  SECRET_KEY=$(TEST_SECRET_KEY) $(BIN)/pytest $(PYTEST_ARGS)

# Benchmarks run on a database and Redis db of their own: they truncate what they use.
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/clarion_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/14
BENCH_ENV = DJANGO_SETTINGS_MODULE=bench.settings DATABASE_URL=$(BENCH_DATABASE_URL) \
  REDIS_URL=$(BENCH_REDIS_URL) DB_CONN_MAX_AGE=600 SECRET_KEY=$(TEST_SECRET_KEY)

## bench: Clarion beside its peers on 100,000 recipients; writes bench/results/latest.json
bench: $(STAMP)
	$(BENCH_ENV) $(BIN)/python -m bench.run

## bench-quick: small sizes, under a minute; fails when a ratio is below bench/thresholds.json
bench-quick: $(STAMP)
	$(BENCH_ENV) $(BIN)/python -m bench.run --quick --check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf var
