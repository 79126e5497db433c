"""The AWS local path for push, as ``drivepipe dev aws`` wires it, driven from a test.

moto_server (S3, SQS, Secrets Manager), the Drive emulator (delivering real HTTP notifications),
``chalice local`` serving ``POST /drive/notifications`` in its own
process, and the same app imported here, its ``push_worker`` fed from the push queue by the SQS
pump and ``on_schedule`` fired on demand, as EventBridge would.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from devstack.aws_dev import AwsDevBridge, Invocation, chalice_local
from devstack.drive_emulator import DriveEmulator
from devstack.push_dev import aws_push_env, open_channels
from devstack.servers import MotoServer, free_port
from shared.config import load_config_from_env
from shared.run import channel_secrets, pending
from shared.run.channels import ChannelRecord
from shared.settings import _load
from shared.storage import open_storage
from tests.aws.conftest import SHIPPED_CONFIG, import_app

TIMEOUT = 90.0


def wait_for(check: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    """Poll ``check`` until it returns something truthy (its value); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.25)


@dataclass
class AwsPush:
    """The running stack and what a test looks at."""

    moto: MotoServer
    drive: DriveEmulator
    root: Path
    bridge: AwsDevBridge
    output_bucket: str
    webhook: str
    invocations: list[Invocation] = field(default_factory=list)

    # ---- Drive side ------------------------------------------------------------------------
    def write(self, relpath: str, text: str) -> Path:
        """Save a file as editors do (a hidden temporary file renamed into place): one change."""
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        previous = path.stat().st_mtime_ns if path.exists() else 0
        temporary = path.with_name(f".{path.name}.saving")
        temporary.write_text(text)
        stamp = max(time.time_ns(), previous + 1_000_000_000)  # a new mtime, always
        os.utime(temporary, ns=(stamp, stamp))
        os.replace(temporary, path)
        return path

    # ---- lake side -------------------------------------------------------------------------
    def keys(self, prefix: str = "sales/") -> set[str]:
        s3 = self.moto.client("s3")
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.output_bucket, Prefix=prefix
        )
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    def data_keys(self, prefix: str = "sales/") -> set[str]:
        return {k for k in self.keys(prefix) if "/_" not in k}

    def frame(self, key: str) -> pd.DataFrame:
        body = self.moto.client("s3").get_object(Bucket=self.output_bucket, Key=key)["Body"]
        return pd.read_parquet(io.BytesIO(body.read()))

    def runs(self, trigger: str | None = None) -> list[dict[str, Any]]:
        s3 = self.moto.client("s3")
        found = []
        for key in self.keys("sales/_runs/"):
            if key.count("/") == 2 and key.endswith(".json"):
                body = s3.get_object(Bucket=self.output_bucket, Key=key)["Body"].read()
                found.append(json.loads(body))
        return sorted(
            (r for r in found if trigger is None or r["trigger"] == trigger),
            key=lambda r: r["run_id"],
        )

    def record(self) -> ChannelRecord:
        return ChannelRecord.load(open_storage(f"s3://{self.output_bucket}/sales"), "sales")

    def token(self) -> str:
        current = self.record().current
        assert current is not None
        return channel_secrets.read_token(current.token_ref)

    def requested(self) -> pending.Requested | None:
        return pending.requested(open_storage(f"s3://{self.output_bucket}/sales"), "sales")

    def queued(self) -> int:
        sqs = self.moto.client("sqs")
        url = sqs.get_queue_url(QueueName="drivepipe-push-local")["QueueUrl"]
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(attrs[n]) for n in names)

    def settle(self) -> None:
        """Wait until every notification is delivered and every handed-off sync has run."""
        assert self.drive.watch.wait_idle(TIMEOUT)
        wait_for(lambda: self.queued() == 0, "the push queue to drain")

    def fire_schedule(self) -> list[dict[str, Any]]:
        invocation = self.bridge.fire_schedule()
        assert invocation.error is None, invocation.error
        result: list[dict[str, Any]] = invocation.result
        return result


@contextlib.contextmanager
def aws_push_stack(moto: MotoServer, tmp: Path, *, suffix: str) -> Iterator[AwsPush]:
    """Start the whole AWS local path (env applied for its lifetime); stop it after."""
    root = tmp / "drive"
    (root / "sales").mkdir(parents=True)
    (root / "sales" / "q1.csv").write_text("Region,Units\nnorth,3\n")
    input_bucket = moto.create_bucket(f"in-{suffix}")
    output_bucket = moto.create_bucket(f"out-{suffix}")
    invocations: list[Invocation] = []
    with pytest.MonkeyPatch.context() as env, DriveEmulator(root) as drive:
        port = free_port()
        values = {
            **moto.env(),
            "DRIVE_API_URL": drive.url,
            "DRIVE_ACCESS_TOKEN": "local-test-token",
            "DRIVE_FOLDER_ID": drive.root_id,
            "DRIVEPIPE_INPUT_BUCKET": input_bucket,
            "DRIVEPIPE_OUTPUT_BUCKET": output_bucket,
            "DRIVEPIPE_CONFIG": str(SHIPPED_CONFIG),
            "DRIVEPIPE_HTTP_AUTH": "iam",
            **aws_push_env(moto.client("sqs"), f"http://127.0.0.1:{port}"),
        }
        values["DRIVEPIPE_CHANNEL_SECRETS"] = f"aws-sm:drivepipe/test/{suffix}"
        for name, value in values.items():
            env.setenv(name, value)
        for name in ("DRIVEPIPE_PUBLIC", "DRIVEPIPE_FANOUT_QUEUE", "DRIVEPIPE_FANOUT_DLQ"):
            env.delenv(name, raising=False)
        _load.cache_clear()
        load_config_from_env.cache_clear()
        with chalice_local(port, dict(os.environ)) as url:
            app = import_app().app
            bridge = AwsDevBridge(
                app,
                moto.client("s3"),
                input_bucket,
                sqs=moto.client("sqs"),
                report=invocations.append,
            )
            assert bridge.queues is not None
            bridge.queues.start()
            stack = AwsPush(moto, drive, root, bridge, output_bucket, url, invocations=invocations)
            try:
                assert "opened" in open_channels(str(SHIPPED_CONFIG))[0]
                yield stack
            finally:
                bridge.queues.stop()
        _load.cache_clear()
        load_config_from_env.cache_clear()
