"""The deployable source dir works on its own, installed the way Cloud Build installs it.

A fresh virtualenv gets ``pip install -r requirements.txt`` from the staged source directory
alone (no repo, no editable install of drivepipe), then serves the functions from there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from deploy.package_gcp import stage_source
from devstack.gcp_cloudevents import deliver, gcs_finalize_event, object_resource
from devstack.gcp_dev import FunctionServer
from tests.gcp.conftest import logs_for_event

pytestmark = pytest.mark.slow

ENV = {
    "DRIVEPIPE_INPUT_BUCKET": "clean-in",
    "DRIVEPIPE_OUTPUT_BUCKET": "clean-out",
    "DRIVE_FOLDER_ID": "root",
    "GOOGLE_CLOUD_PROJECT": "local",
}


def clean_env() -> dict[str, str]:
    """The current environment minus anything that could leak the repo's packages in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "DRIVEPIPE_CONFIG")
    }
    return {**env, **ENV}


@pytest.fixture(scope="module")
def clean_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(source dir, venv bin dir): the staged source installed into a brand-new venv."""
    root = tmp_path_factory.mktemp("gcp-clean")
    source = stage_source(root / "source")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            "requirements.txt",
        ],
        cwd=source,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    yield source, venv / "bin"


def test_vendored_core_imports_from_the_source_dir(clean_install: tuple[Path, Path]):
    source, bin_dir = clean_install
    probe = (
        "import main, shared, pandas, pyarrow; "
        "print(shared.__file__); print(sorted(main.service.config().pipelines))"
    )
    result = subprocess.run(
        [str(bin_dir / "python"), "-c", probe],
        cwd=source,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    shared_file, pipelines = result.stdout.splitlines()
    assert Path(shared_file).resolve().is_relative_to(source.resolve())
    assert pipelines == "['products', 'sales']"


def test_functions_serve_from_the_clean_install(clean_install: tuple[Path, Path]):
    source, bin_dir = clean_install
    executable = str(bin_dir / "functions-framework")
    with FunctionServer(
        "sync_http", ENV, source=source / "main.py", cwd=source, executable=executable
    ) as http:
        health = requests.get(f"{http.url}/health", timeout=30)
    assert health.status_code == 200, health.text
    assert health.json() == {"status": "ok", "pipelines": ["products", "sales"]}

    # A bookkeeping object is ignored without touching storage: the CloudEvent path end to end.
    event = gcs_finalize_event(
        object_resource("clean-in", "sales/_runs/x.json", generation=3, size=2)
    )
    with FunctionServer(
        "on_upload", ENV, source=source / "main.py", cwd=source, executable=executable
    ) as upload:
        delivery = deliver(upload.url, event, mode="structured")
        records = logs_for_event(upload, event.attributes["id"])
    assert delivery.status == 200, delivery.text
    assert [r["outcome"] for r in records] == ["ignored"]
