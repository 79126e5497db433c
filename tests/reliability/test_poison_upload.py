"""A poison pill in an upload: an object whose step kills the function, delivered again and again.

Each delivery runs in its own process through ``aws.s3_notification`` (what the Lambda handler
calls) against moto_server. The first K deliveries die (exit 137); the next quarantines the
object unprocessed with "crashed the function K times", and the event is acknowledged: a later
delivery is a duplicate. A new version of the object starts counting from zero.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from devstack.aws_events import s3_event
from devstack.servers import MotoServer
from shared.storage import Storage, layout, open_storage
from shared.triggers.events import from_s3_event
from tests.reliability.helpers import toml_dumps
from tests.reliability.test_duplicates import upload

REPO = Path(__file__).resolve().parents[2]
K = 2  # S3 invokes Lambda asynchronously: 3 deliveries by default, so K + 1 fit
DELIVER = (
    "import json, sys\n"
    "from shared.triggers import aws\n"
    "print(json.dumps(aws.s3_notification(json.loads(sys.argv[1]), trigger='s3')))\n"
)


def expire_claim(dest: Storage, record: dict[str, Any]) -> None:
    """A killed delivery's event claim would expire after its TTL; expire it now instead."""
    [event] = from_s3_event(s3_event([record]))
    for info in list(dest.list(layout.lock_prefix(layout.event_lock(event.dedupe_id)))):
        dest.delete(info.key)


def test_an_upload_that_kills_the_function_k_times_is_quarantined_and_acknowledged(
    moto_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    config = tmp_path / "drivepipe.toml"
    pipeline = {
        "source": {"incoming_url": f"s3://{s3_bucket}/incoming/"},
        "steps": [{"op": "custom", "function": "tests.reliability.poison_steps:die_on_poison"}],
        "output": {"url": f"s3://{s3_bucket}/out", "format": "csv"},
    }
    settings = {"custom_step_modules": ["tests.reliability.poison_steps"]}
    config.write_text(toml_dumps({"settings": settings, "pipelines": {"rel": pipeline}}))
    env = {
        **os.environ,
        "DRIVEPIPE_CONFIG": str(config),
        "DRIVEPIPE_POISON_ATTEMPTS": str(K),
        "PYTHONPATH": str(REPO),
    }
    dest = open_storage(f"s3://{s3_bucket}/out")

    def deliver(event_record: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        body = json.dumps(s3_event([event_record]))
        return subprocess.run(
            [sys.executable, "-c", DELIVER, body],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def dies(event_record: dict[str, Any], count: int) -> None:
        died = deliver(event_record)
        assert died.returncode == 137, died.stderr[-2000:]
        markers = [json.loads(dest.read(i.key)) for i in dest.list("_state/attempts/rel/")]
        assert [(m["path"], m["count"]) for m in markers] == [("poison.csv", count)]
        assert not list(dest.list("_runs/"))  # a killed delivery writes no manifest
        expire_claim(dest, event_record)

    dies(upload(moto_server, s3_bucket, "incoming/poison.csv", b"poison,row\n0,0\n"), 1)
    # Overwritten before its next delivery: a new version starts again from zero.
    poison = b"poison,row\n1,1\n"
    record = upload(moto_server, s3_bucket, "incoming/poison.csv", poison)
    for crash in range(1, K + 1):
        dies(record, crash)

    done = deliver(record)
    assert done.returncode == 0, done.stderr[-2000:]
    [outcome] = json.loads(done.stdout)
    assert outcome["outcome"] == "transformed"  # acknowledged: no redelivery asked for
    [failed] = outcome["summary"]["failed"]
    assert failed["error"] == f"crashed the function {K} times"
    assert dest.read(failed["quarantine_key"]) == poison
    assert not list(dest.list("_state/attempts/"))
    assert [o.key for o in dest.list() if not o.key.startswith("_")] == []

    again = deliver(record)  # the event is done: a late redelivery changes nothing
    assert json.loads(again.stdout)[0]["outcome"] == "duplicate", again.stderr[-2000:]
