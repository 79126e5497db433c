"""The folder_id override attack: another folder's rows never replace a pipeline's outputs.

``allow_overrides`` is empty by default, so a remote caller's ``folder_id`` (or any other
override) is refused, naming the field. Where the owner lists ``folder_id``, and on the
owner's own ``drivepipe sync --folder``, another folder runs with its own state and outputs
under ``_folders/<id>/``. Either way the pipeline's outputs and state stay byte-identical,
and the next regular sync still holds only the pipeline's folder's rows.
"""

from __future__ import annotations

import json
from pathlib import Path

from devstack.drive_emulator import DriveEmulator
from devstack.servers import MotoServer
from shared.cli import EXIT_OK
from shared.cli import main as cli_main
from shared.storage import open_storage
from shared.triggers import service
from shared.triggers.events import ObjectEvent
from tests.reliability.conftest import Deploy
from tests.reliability.lake import audit, write_tagged_csv


def pipeline_bytes(root: Path) -> dict[str, bytes]:
    """The pipeline's own objects (outputs and ``_state``), by relative path: everything but
    manifests and the isolated ``_folders/`` runs."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in ("_folders", "_runs", "_locks")
    }


def test_a_folder_override_cannot_replace_the_outputs(
    moto_server: MotoServer,
    s3_bucket: str,
    emulator: DriveEmulator,
    drive_root: Path,
    tmp_path: Path,
    deploy: Deploy,
) -> None:
    prod = {"prod": write_tagged_csv(drive_root / "prod" / "report.csv", "prod", 3)}
    write_tagged_csv(drive_root / "other" / "report.csv", "other", 2)
    out = tmp_path / "out"
    other = emulator.id_for("other")
    body = {
        "source": {"folder_id": emulator.id_for("prod")},
        "output": {"url": str(out), "format": "csv"},
    }
    settings = {"requests_url": f"s3://{s3_bucket}/requests/"}
    config = deploy({"settings": settings, "pipelines": {"sales": body}})
    assert cli_main(["sync", "--config", str(config)]) == EXIT_OK
    before = pipeline_bytes(out)
    assert "sales/report.csv" in before and "_state/sales.json" in before
    attack = json.dumps({"pipeline": "sales", "folder_id": other, "full_refresh": True})
    s3 = moto_server.client()

    def request_file(name: str) -> dict[str, object]:
        s3.put_object(Bucket=s3_bucket, Key=f"requests/{name}.json", Body=attack.encode())
        event = ObjectEvent("s3", s3_bucket, f"requests/{name}.json", name)
        return service.on_object(event, trigger="s3")

    # 1. Nothing listed (the default): refused, naming the field.
    response = service.http_sync(attack.encode())
    assert response.status == 400, response.body
    assert (response.body["error"]["code"], response.body["error"]["field"]) == (
        "override_not_allowed",
        "folder_id",
    )
    refused = service.http_sync(b'{"pipeline": "sales", "full_refresh": true}')
    assert refused.body["error"]["field"] == "full_refresh"  # every override, by default
    result = request_file("r1")
    assert result["outcome"] == "ignored" and "folder_id: override not allowed" in str(
        result["reason"]
    )
    # 2. The owner's CLI: runs, in its own prefix.
    assert cli_main(["sync", "--config", str(config), "--folder", other]) == EXIT_OK
    assert pipeline_bytes(out) == before

    # 3. The owner lists folder_id: callers may read another folder, never into the table.
    body["allow_overrides"] = ["folder_id", "full_refresh"]
    deploy({"settings": settings, "pipelines": {"sales": body}})
    response = service.http_sync(attack.encode())
    assert response.status == 200, response.body
    assert response.body["destination"] == f"{out}/_folders/{other}"
    assert request_file("r2")["outcome"] == "sync"
    assert pipeline_bytes(out) == before

    # The isolated runs hold the other folder's rows; the table only the pipeline's.
    isolated = open_storage(f"{out}/_folders/{other}")
    assert audit(isolated, {"other": [("other", "0"), ("other", "1")]}, "sales").ok
    regular = service.http_sync(b'{"pipeline": "sales"}')
    assert regular.status == 200 and regular.body["counts"]["skipped_unchanged"] == 1
    assert pipeline_bytes(out) == before
    table = open_storage(str(out))
    lake = audit(table, prod, "sales")
    assert lake.ok and lake.correct == 1, lake.summary()
