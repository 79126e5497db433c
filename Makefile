# drivepipe: two commands matter. `make demo` runs the main job on the local stack;
# `make test` sets up and passes the tests. Both install what they need into .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test lint typecheck bench package-aws package-gcp clean

$(STAMP): requirements/runtime.txt requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/drivepipe demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check shared devstack tests bench chalice_app/app.py gcp_functions/main.py

typecheck: setup
	$(VENV)/bin/mypy

test: setup lint
	$(PY) -m pytest -n 2

bench: setup
	$(PY) -m bench.drive_sync
	$(PY) -m bench.transform
	$(PY) -m bench.aws_package

# Vendor shared/ into chalice_app/, run `chalice package` and check Lambda's size limits.
package-aws: setup
	$(PY) -m devstack.package_aws

# Vendor shared/ into gcp_functions/ and print the gcloud deploy commands.
package-gcp: setup
	$(PY) -m devstack.package_gcp

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
