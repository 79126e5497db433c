"""moto_server that enforces IAM the way AWS does for the calls drivepipe makes.

moto authenticates and authorizes every request once ``INITIAL_NO_AUTH_ACTION_COUNT`` requests
have passed (moto's docs/iam.rst; ``POST /moto-api/reset-auth`` with a count sets the same
setting on a running server, which is how :class:`MotoIamServer.enforce` turns it on after the
fixtures are created). These gaps would make its verdicts differ from AWS's, so this launcher
closes them before it starts moto's own server:

- **Batch actions.** moto asks for ``sqs:SendMessageBatch``; AWS authorizes ``SendMessageBatch``
  with ``sqs:SendMessage`` (there is no IAM action of the batch's name), likewise
  ``DeleteMessageBatch`` / ``ChangeMessageVisibilityBatch`` and S3 ``DeleteObjects``; S3
  ``HeadBucket`` is authorized with ``s3:ListBucket``.
- **The ``?`` wildcard.** IAM matches ``?`` as one character (``secret:drivepipe/dev/drive-??????``
  is how a secret is scoped without its random suffix); moto treats it as a regex quantifier.
- **Resources.** moto authorizes Secrets Manager calls, SNS calls, and SQS ``GetQueueUrl``
  (whose queue is named by ``QueueName``, not a URL), against ``*``, so a policy scoped to one
  secret, topic or queue could never pass; here the resource is the ARN AWS evaluates: the
  secret's (for ``CreateSecret``, whose secret does not exist yet, its name plus the six
  characters Secrets Manager will append: AWS's docs scope creation with ``name-??????`` for
  that reason), the topic's (``TopicArn``, or ``TargetArn`` for a direct publish), the queue's.
- **The refusal's shape.** moto refuses in the XML shape of query-protocol services
  (``<Code>AccessDenied</Code>``, HTTP 403) even to JSON-protocol services, whose clients then
  see only the status (botocore's error code ``403``). AWS answers those (Secrets Manager...)
  ``{"__type": "AccessDeniedException"}`` with HTTP 400, which is what they get here.

``python -m devstack.moto_iam -H 127.0.0.1 -p PORT`` takes moto_server's options.
"""

from __future__ import annotations

import re
import sys
import urllib.request
from typing import Any

from devstack.servers import HOST, MotoServer

ACTION_ALIASES = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "s3:DeleteObjects": "s3:DeleteObject",
    "s3:HeadBucket": "s3:ListBucket",  # AWS: HeadBucket needs s3:ListBucket
}


NEW_SECRET_SUFFIX = "Ab12Cd"  # stands for the random six characters of a secret to be created


def _secret_arn(response: Any, name: str) -> str:
    """A secret's ARN from a name (an ARN stays as it is), without the random suffix."""
    if name.startswith("arn:"):
        return name
    return f"arn:aws:secretsmanager:{response.region}:{response.current_account}:secret:{name}"


def _iam_match(pattern: str, string: str) -> re.Match[str] | None:
    """IAM's wildcard match: ``*`` any run of characters, ``?`` exactly one."""
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.match(f"^{regex}$", string)


def patch() -> None:
    """Close the gaps (see the module docstring) in this process's moto."""
    from moto.core.exceptions import AccessDeniedError, JsonRESTError
    from moto.core.responses import BaseResponse
    from moto.iam import access_control
    from moto.secretsmanager.responses import SecretsManagerResponse
    from moto.sns.responses import SNSResponse
    from moto.sqs.responses import SQSResponse

    original = access_control.IAMRequestBase.check_action_permitted

    def check_action_permitted(self: Any, resource: str) -> None:
        self._action = ACTION_ALIASES.get(self._action, self._action)
        original(self, resource)

    def secret_resource(self: Any) -> str:
        secret_id = self._get_param("SecretId")
        if not secret_id and self._get_param("Name"):  # CreateSecret: the secret to be
            return f"{_secret_arn(self, self._get_param('Name'))}-{NEW_SECRET_SUFFIX}"
        try:
            return str(self.backend.describe_secret(secret_id=secret_id).arn)
        except Exception:  # an unknown secret: authorize its ARN, then answer not found
            return "*" if not secret_id else _secret_arn(self, secret_id)

    def topic_resource(self: Any) -> str:
        return str(self._get_param("TopicArn") or self._get_param("TargetArn") or "*")

    queue_resource = SQSResponse._determine_resource

    def named_queue_resource(self: Any) -> str:
        name = self._get_param("QueueName")
        if name and not self._get_param("QueueUrl"):
            return f"arn:aws:sqs:{self.region}:{self.current_account}:{name}"
        return str(queue_resource(self))

    authorize = BaseResponse._authenticate_and_authorize_normal_action

    def authorize_as_aws_answers(self: Any, resource: str = "*") -> None:
        try:
            authorize(self, resource)
        except AccessDeniedError as refused:
            if "x-amz-json" not in self.headers.get("Content-Type", ""):
                raise
            raise JsonRESTError("AccessDeniedException", refused.message) from None

    BaseResponse._authenticate_and_authorize_normal_action = authorize_as_aws_answers  # type: ignore[method-assign]
    SQSResponse._determine_resource = named_queue_resource  # type: ignore[method-assign]
    SNSResponse._determine_resource = topic_resource  # type: ignore[attr-defined]
    access_control.IAMRequestBase.check_action_permitted = check_action_permitted  # type: ignore[method-assign]
    access_control.IAMPolicyStatement._match = staticmethod(_iam_match)  # type: ignore[method-assign]
    SecretsManagerResponse._determine_resource = secret_resource  # type: ignore[attr-defined]


class MotoIamServer(MotoServer):
    """``moto_server`` through this launcher; :meth:`enforce` turns IAM enforcement on."""

    name = "moto_server-iam"

    def command(self) -> list[str]:
        """``python -m devstack.moto_iam -H 127.0.0.1 -p PORT``."""
        return [sys.executable, "-m", "devstack.moto_iam", "-H", HOST, "-p", str(self.port)]

    def enforce(self, after: int = 0) -> None:
        """Authenticate and authorize every request after the next ``after`` ones."""
        request = urllib.request.Request(
            f"{self.url}/moto-api/reset-auth",
            data=str(after).encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},  # a form body would be parsed away
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()


def main(argv: list[str] | None = None) -> None:
    """Patch moto, then run moto_server with ``argv``."""
    patch()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
