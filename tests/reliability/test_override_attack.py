"""The folder_id override attack: another folder's rows never replace a pipeline's outputs.

``allow_overrides`` defaults to since, dry_run and full_refresh, so a ``folder_id`` in
``POST /sync``, in a request file or on ``drivepipe sync --folder`` is refused, naming the
field, and the outputs and state stay byte-identical.
"""

from __future__ import annotations

import json
from pathlib import Path

from devstack.drive_emulator import DriveEmulator
from devstack.servers import MotoServer
from shared.cli import EXIT_USAGE
from shared.cli import main as cli_main
from shared.triggers import service
from shared.triggers.events import ObjectEvent
from tests.reliability.conftest import Deploy


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (outputs and ``_state``), by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_a_folder_override_cannot_replace_the_outputs(
    moto_server: MotoServer,
    s3_bucket: str,
    emulator: DriveEmulator,
    drive_root: Path,
    tmp_path: Path,
    deploy: Deploy,
) -> None:
    for folder, rows in (("prod", "id,amount\n1,10\n2,20\n"), ("other", "id,amount\n9,-1\n")):
        (drive_root / folder).mkdir()
        (drive_root / folder / "report.csv").write_text(rows)
    out = tmp_path / "out"
    config = deploy(
        {
            "settings": {"requests_url": f"s3://{s3_bucket}/requests/"},
            "pipelines": {
                "sales": {
                    "source": {"folder_id": emulator.id_for("prod")},
                    "output": {"url": str(out), "format": "csv"},
                }
            },
        }
    )
    assert service.http_sync(b'{"pipeline": "sales"}').status == 200
    before = tree_bytes(out)
    assert "sales/report.csv" in before
    other = emulator.id_for("other")
    attack = json.dumps({"pipeline": "sales", "folder_id": other, "full_refresh": True})

    response = service.http_sync(attack.encode())
    assert response.status == 400, response.body
    error = response.body["error"]
    assert (error["code"], error["field"]) == ("override_not_allowed", "folder_id")

    moto_server.client().put_object(Bucket=s3_bucket, Key="requests/r.json", Body=attack.encode())
    result = service.on_object(ObjectEvent("s3", s3_bucket, "requests/r.json", "v1"), trigger="s3")
    assert result["outcome"] == "ignored"
    assert "folder_id: override not allowed" in result["reason"]

    code = cli_main(["sync", "--config", str(config), "--folder", other])
    assert code == EXIT_USAGE

    assert tree_bytes(out) == before
