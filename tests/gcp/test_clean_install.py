"""The GCP clean-runtime test: the deploy source the generated script stages, on its own.

The staging steps of the generated deploy script (``deploy.package_gcp.stage_commands``) build
the source folder; a fresh virtualenv gets ``pip install -r requirements.txt`` (the hash-pinned
lock) from that folder alone, as Cloud Build does; no repo, no editable install of drivepipe.
Then each of the five entry points is served by that venv's ``functions-framework`` from the
folder, against gcp-storage-emulator and the Drive emulator, with real event shapes
(binary-mode CloudEvents: GCS finalize, Pub/Sub messagePublished).

The venv is cached under ``build/gcp/venv-<hash of requirements.txt>`` (built once per lock,
about a minute from pip's cache). Once, a venv without openpyxl and python-calamine shows the
check catches a dependency missing from the lock: the Excel upload is then not transformed.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests

from deploy.package_gcp import REPO_ROOT, render, stage_commands
from devstack.drive_emulator.emulator import DriveEmulator
from devstack.gcp_cloudevents import (
    deliver,
    gcs_finalize_event,
    resource_from_blob,
    scheduler_event,
)
from devstack.gcp_dev import FunctionServer, start_all, storage_client
from devstack.servers import GcsEmulator
from tests.conftest import unique_bucket_name
from tests.gcp.conftest import logs_for_event

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
TARGETS = ("sync_http", "on_upload", "on_schedule", "fanout_worker", "fanout_dead_letter")
CACHE = REPO_ROOT / "build" / "gcp"
LEAK_VARS = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "DRIVEPIPE_CONFIG", "PYTHONSTARTUP")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The current environment minus anything that could leak the repo's packages in."""
    return {**{k: v for k, v in os.environ.items() if k not in LEAK_VARS}, **(extra or {})}


def stage(dest: Path) -> Path:
    """Run the generated script's staging steps (from the repository root) into ``dest``."""
    script = dest.parent / "stage.sh"
    script.write_text(render(stage_commands(dest)), encoding="utf-8")
    done = subprocess.run(["bash", str(script)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return dest


def venv_for(requirements: Path, *, without: tuple[str, ...] = ()) -> Path:
    """A venv with ``requirements`` installed (less ``without``), cached by content hash.

    Built in place under a file lock (venvs are not relocatable), so two suites side by side
    build it once.
    """
    lines = requirements.read_text(encoding="utf-8").replace("\\\n", " ").splitlines()
    kept = [line for line in lines if line.split("==", 1)[0].strip() not in without]
    text = "\n".join(kept) + "\n"
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    venv = CACHE / f"venv-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"venv-{key}.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not (venv / ".installed").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            lock = venv / "requirements.txt"
            lock.write_text(text, encoding="utf-8")
            pip = subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", "--no-deps", "-r", str(lock)],
                env=clean_env(), capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
            (venv / ".installed").write_text(key)
    return venv


def xlsx_bytes() -> bytes:
    buffer = io.BytesIO()
    frame = pd.DataFrame({"Order ID": ["X1", "X2"], "Units": [2, 5], "Unit Price": [1.0, 2.0]})
    frame.to_excel(buffer, index=False)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stage(tmp_path_factory.mktemp("gcp-clean") / "source")


def serve(
    source: Path, venv: Path, gcs: GcsEmulator, drive: DriveEmulator, buckets: tuple[str, str]
) -> dict[str, FunctionServer]:
    env = {
        **clean_env(),
        "STORAGE_EMULATOR_HOST": gcs.url,
        "GOOGLE_CLOUD_PROJECT": "local",
        "DRIVE_API_URL": drive.url,
        "DRIVE_ACCESS_TOKEN": "local-test-token",
        "DRIVE_FOLDER_ID": drive.root_id,
        "DRIVEPIPE_INPUT_BUCKET": buckets[0],
        "DRIVEPIPE_OUTPUT_BUCKET": buckets[1],
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
    }
    executable = str(venv / "bin" / "functions-framework")
    servers = {
        t: FunctionServer(t, env, source=source / "main.py", cwd=source, executable=executable)
        for t in TARGETS
    }
    start_all(servers.values())
    return servers


@pytest.fixture(scope="module")
def clean(
    staged: Path, gcs_emulator: GcsEmulator, drive_root: Path
) -> Iterator[tuple[dict[str, FunctionServer], object, tuple[str, str]]]:
    venv = venv_for(staged / "requirements.txt")
    client = storage_client(gcs_emulator.url)
    buckets = (unique_bucket_name("clean-in"), unique_bucket_name("clean-out"))
    for name in buckets:
        client.create_bucket(name)
    with DriveEmulator(drive_root) as drive:
        servers = serve(staged, venv, gcs_emulator, drive, buckets)
        try:
            yield servers, client, buckets
        finally:
            for server in servers.values():
                server.stop()


def test_the_staged_source_holds_the_functions_and_the_core_only(staged: Path):
    names = {p.name for p in staged.iterdir()}
    assert names == {"main.py", "requirements.txt", "drivepipe.toml", ".gcloudignore", "shared"}
    assert (staged / "shared" / "triggers" / "gcp.py").is_file()


def test_every_entry_point_serves_from_the_clean_install(clean):
    servers, client, (inp, out) = clean
    # the core imports from the source folder, not from the repository
    python = Path(servers["sync_http"].executable or "").parent / "python"
    probe = subprocess.run(
        [str(python), "-c", "import shared, main; print(shared.__file__)"],
        cwd=servers["sync_http"].cwd, env=clean_env({"DRIVEPIPE_CONFIG": "drivepipe.toml",
        "DRIVEPIPE_INPUT_BUCKET": inp, "DRIVEPIPE_OUTPUT_BUCKET": out}),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()).is_relative_to(servers["sync_http"].cwd or "/")
    assert (
        "boto3"
        not in subprocess.run(
            [str(python), "-m", "pip", "list"], capture_output=True, text=True, timeout=120
        ).stdout
    )  # the GCP functions get only what they import

    http = servers["sync_http"].url
    assert requests.get(f"{http}/health", timeout=60).json()["pipelines"] == ["products", "sales"]
    synced = requests.post(f"{http}/sync", data='{"pipeline": "products"}', timeout=300)
    assert synced.status_code == 200, synced.text
    assert synced.json()["counts"]["written"] == 1

    for name, data in (("incoming/sales/clean.csv", b"Order ID,Units\nC1,3\n"),
                       ("incoming/sales/clean.xlsx", xlsx_bytes())):  # fmt: skip
        blob = client.bucket(inp).blob(name)
        blob.upload_from_string(data)
        blob.reload()
        event = gcs_finalize_event(resource_from_blob(blob))
        delivery = deliver(servers["on_upload"].url, event, mode="binary")
        assert delivery.status == 200, delivery.text
        (record,) = logs_for_event(servers["on_upload"], event.attributes["id"])
        assert record["summary"]["counts"]["written"] == 1, record

    event = scheduler_event(["products"])
    assert deliver(servers["on_schedule"].url, event, mode="binary").status == 200
    assert logs_for_event(servers["on_schedule"], event.attributes["id"])

    for target in ("fanout_worker", "fanout_dead_letter"):  # not a work item: acknowledged
        event = scheduler_event(None, topic="drivepipe-work", body="not a work item")
        delivery = deliver(servers[target].url, event, mode="binary")
        assert delivery.status == 200, delivery.text
        assert logs_for_event(servers[target], event.attributes["id"])


def test_a_dependency_missing_from_the_lock_is_caught(
    staged: Path, gcs_emulator: GcsEmulator, drive_root: Path
):
    """Once: without openpyxl and python-calamine an Excel upload is not transformed."""
    venv = venv_for(staged / "requirements.txt", without=("openpyxl", "python-calamine"))
    client = storage_client(gcs_emulator.url)
    buckets = (unique_bucket_name("thin-in"), unique_bucket_name("thin-out"))
    for name in buckets:
        client.create_bucket(name)
    with DriveEmulator(drive_root) as drive:
        env_servers = serve(staged, venv, gcs_emulator, drive, buckets)
        try:
            blob = client.bucket(buckets[0]).blob("incoming/sales/thin.xlsx")
            blob.upload_from_string(xlsx_bytes())
            blob.reload()
            event = gcs_finalize_event(resource_from_blob(blob))
            delivery = deliver(env_servers["on_upload"].url, event, mode="binary")
            records = logs_for_event(env_servers["on_upload"], event.attributes["id"])
        finally:
            for server in env_servers.values():
                server.stop()
    written = [r for r in records if ((r.get("summary") or {}).get("counts") or {}).get("written")]
    assert written == [], records
    text = str(records) + delivery.text
    assert "openpyxl" in text or "calamine" in text, text
