"""Log lines that can't be forged and don't leak, even from a third-party logger at DEBUG."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import boto3
import pytest

from shared import log
from shared.errors import ConfigError

FORGED = "a.csv\nERROR   drivepipe.sync: forged line\r\x1b[31mred\x07\x00\u2028end"


@pytest.fixture
def logging_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """A root handler writing to a buffer (as the Lambda runtime's does); all restored after."""
    root = logging.getLogger()
    ours = logging.getLogger("drivepipe")
    saved = (
        root.handlers[:],
        root.level,
        ours.handlers[:],
        ours.level,
        ours.propagate,
        {name: logging.getLogger(name).level for name in log.THIRD_PARTY_LOGGERS},
    )
    monkeypatch.delenv(log.THIRD_PARTY_ENV, raising=False)
    monkeypatch.delenv("DRIVEPIPE_LOG_FORMAT", raising=False)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root.handlers[:] = [handler]
    try:
        yield buffer
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        ours.handlers[:], ours.level, ours.propagate = saved[2], saved[3], saved[4]
        for name, level in saved[5].items():
            logging.getLogger(name).setLevel(level)


def test_text_logs_escape_control_characters_in_message_extras_and_traceback(
    logging_state: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    log.configure("INFO", json_lines=False)
    logger = log.get_logger("sync")
    logger.warning("cannot read %s", FORGED, extra={"path": FORGED, "bad\nkey": 1})
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # one record, one line
    assert "\x1b" not in err and "\r" not in err and "\x00" not in err and "\u2028" not in err
    assert "cannot read a.csv\\nERROR   drivepipe.sync: forged line\\r\\x1b[31mred\\x07" in err
    assert "path=a.csv\\nERROR" in err and "bad\\nkey=1" in err
    try:
        raise ValueError("boom\nERROR   drivepipe.sync: forged from a traceback")
    except ValueError:
        logger.exception("failed")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("ERROR   drivepipe.sync: failed")
    assert lines[1:] and all(line.startswith("  | ") for line in lines[1:])


def test_json_logs_keep_one_record_per_line_and_round_trip(
    logging_state: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    log.configure("INFO", json_lines=True)
    log.get_logger("sync").warning("cannot read %s", FORGED, extra={"path": FORGED})
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "\x1b" not in err and "\u2028" not in err
    entry = json.loads(err)
    assert entry["message"] == f"cannot read {FORGED}" and entry["path"] == FORGED


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("{'X-Amz-Security-Token': b'FwoGZXIvYXdzEJr'}", "FwoGZXIvYXdzEJr"),
        ("x-amz-security-token:FwoGZXIvYXdzEJr\nhost:s3", "FwoGZXIvYXdzEJr"),
        (
            "{'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=deadbeef'}",
            "Signature=deadbeef",
        ),
        ('"authorization": "Bearer ya29.secret"', "ya29.secret"),
        ("{'x-goog-api-key': 'AIzaSyFAKE'}", "AIzaSyFAKE"),
        ("GET /drive/v3/files?q=x&key=AIzaSyFAKE HTTP/1.1", "AIzaSyFAKE"),
        ("GET /b/k?X-Amz-Signature=abc123&X-Amz-Security-Token=FwoG HTTP/1.1", "abc123"),
        ('{"access_token": "ya29.a0AfH6", "expires_in": 3599}', "ya29.a0AfH6"),
        ("<SecretAccessKey>wJalrXUtnFEMI/K7MDENG</SecretAccessKey>", "wJalrXUtnFEMI"),
        ('{"SessionToken": "IQoJb3JpZ2lu"}', "IQoJb3JpZ2lu"),
        ("aws_secret_access_key = wJalrXUtnFEMI", "wJalrXUtnFEMI"),
        ('{"message": "{\\"access_token\\": \\"ya29.inner\\"}"}', "ya29.inner"),
    ],
)
def test_redact_masks_credential_headers_and_fields(text: str, secret: str) -> None:
    masked = log.redact(text)
    assert secret not in masked and "***" in masked


def test_redact_leaves_page_tokens_and_plain_words() -> None:
    text = '{"nextPageToken": "page-2", "name": "tokens.csv"}'
    assert log.redact(text) == text


def test_third_party_loggers_stay_at_info_under_a_debug_root(
    logging_state: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    logging.getLogger().setLevel(logging.DEBUG)  # what AWS_LAMBDA_LOG_LEVEL=DEBUG does
    log.configure()
    assert {logging.getLogger(n).level for n in log.THIRD_PARTY_LOGGERS} == {logging.INFO}
    logging.getLogger().setLevel(logging.WARNING)
    log.configure()  # never louder than the root asked for
    assert logging.getLogger("botocore").level == logging.WARNING
    monkeypatch.setenv(log.THIRD_PARTY_ENV, "debug")
    log.configure()
    assert logging.getLogger("urllib3").level == logging.DEBUG
    monkeypatch.setenv(log.THIRD_PARTY_ENV, "chatty")
    with pytest.raises(ConfigError, match="DRIVEPIPE_LOG_THIRD_PARTY 'CHATTY' is not one of"):
        log.configure()


def _s3_calls(s3_bucket: str, **credentials: str) -> None:
    client = boto3.client("s3", region_name="us-east-1", **credentials)
    client.put_object(Bucket=s3_bucket, Key="k.csv", Body=b"a\n1\n")
    client.list_objects_v2(Bucket=s3_bucket)


ENV_TOKEN = "FwoGZXIvYXdzENVSESSIONTOKEN0123456789"
ARG_TOKEN = "IQoJb3JpZ2luX2VjEXPLICITTOKEN987654321"
ARG_SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXPLICITKEY"


def test_a_debug_root_never_logs_the_session_token(
    logging_state: io.StringIO, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", ENV_TOKEN)
    logging.getLogger().setLevel(logging.DEBUG)
    log.configure()
    _s3_calls(s3_bucket)
    assert ENV_TOKEN not in logging_state.getvalue()
    assert "X-Amz-Security-Token" not in logging_state.getvalue()  # botocore kept at INFO

    # Asked for, botocore's DEBUG lines appear, with every credential masked.
    monkeypatch.setenv(log.THIRD_PARTY_ENV, "debug")
    log.configure()
    _s3_calls(s3_bucket)
    _s3_calls(
        s3_bucket,
        aws_access_key_id="AKIAEXPLICIT",
        aws_secret_access_key=ARG_SECRET,
        aws_session_token=ARG_TOKEN,
    )
    logged = logging_state.getvalue()
    assert "X-Amz-Security-Token" in logged and "Authorization" in logged, logged[:2000]
    for secret in (ENV_TOKEN, ARG_TOKEN, ARG_SECRET):
        assert secret not in logged, secret
