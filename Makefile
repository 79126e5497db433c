# drivepipe: two commands matter. `make demo` runs the main job on the local stack;
# `make test` sets up and passes the tests. Both install what they need into .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test test-lambda-compat lint typecheck bench package-aws package-gcp clean lock

# requirements/dev.txt is a lock (every package ==, with --hash): pip installs in hash-checking
# mode, so a package that is not in the lock, or a file whose hash differs, fails the install.
$(STAMP): requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip<26.3"  # chalice 1.34 requires pip<26.3
	$(PY) -m pip install --quiet --no-deps -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/drivepipe demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check shared devstack deploy tests bench chalice_app/app.py gcp_functions/main.py

typecheck: setup
	$(VENV)/bin/mypy

test: setup lint
	$(PY) -m devstack.audit
	$(PY) -m pytest -n 2
	$(MAKE) test-lambda-compat

# The core's tests again, on the pandas/numpy/pyarrow versions of the Lambda layer
# (requirements/lambda-compat.txt: lambda-compat.in locked with lambda-layer.txt as overrides).
LAMBDA_VENV := .venv-lambda
$(LAMBDA_VENV)/.installed-stamp: requirements/lambda-compat.txt pyproject.toml
	$(PYTHON) -m venv $(LAMBDA_VENV)
	$(LAMBDA_VENV)/bin/python -m pip install --quiet --no-deps -r requirements/lambda-compat.txt
	$(LAMBDA_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

test-lambda-compat: $(LAMBDA_VENV)/.installed-stamp
	$(LAMBDA_VENV)/bin/python -m pytest tests/transforms tests/streaming tests/core tests/storage -q -n 2 -m "not slow"

# Regenerate every lock from the requirements/*.in files (uv resolves against PyPI for Linux
# x86_64, CPython 3.11, keeping the versions already locked unless an .in file changed them;
# UPGRADE=1 takes the newest allowed). Then `make setup` installs the new dev lock.
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" \
	$(if $(UPGRADE),--upgrade)
lock: setup
	$(UV_COMPILE) requirements/dev.in -o requirements/dev.txt
	$(UV_COMPILE) requirements/gcp.in -c requirements/dev.txt -o gcp_functions/requirements.txt
	$(UV_COMPILE) requirements/lambda-compat.in --override requirements/lambda-layer.txt \
		-o requirements/lambda-compat.txt
	$(PY) -c "from deploy import locks; p = locks.all_problems(); print(*p, sep='\n'); exit(bool(p))"

bench: setup
	$(PY) -m bench.drive_sync
	$(PY) -m bench.drive_changes
	$(PY) -m bench.transform
	$(PY) -m bench.aws_package
	$(PY) -m bench.push_latency

# Build build/aws/deployment.zip (a Chalice project in build/aws-project/ with shared/ vendored,
# `chalice package`, Terraform rewritten for provider 5) and our own layer build/aws/layer.zip
# (deploy/layer.py; wheels cached in build/cache/aws-layer), print both sizes and fail over
# 230 MiB unzipped or on a Python other than the layer's 3.11. --allow-placeholders: measure a
# fresh checkout; a deploy runs `python -m deploy.package_aws --stage STAGE` (strict).
package-aws: setup
	$(PY) -m deploy.package_aws --allow-placeholders

# Print the gcloud setup and deploy commands for review (placeholder project; see
# serverless-README.md for the flags; --run vendors shared/ into gcp_functions/ and runs them).
package-gcp: setup
	$(PY) -m deploy.package_gcp

clean:
	rm -rf $(VENV) $(LAMBDA_VENV) build dist *.egg-info .pytest_cache .ruff_cache
