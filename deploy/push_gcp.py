"""The ``gcloud`` commands Drive push notifications add on GCP (``package_gcp --push``).

- setup: the push topic, who may publish to it (the functions: the webhook hands syncs off,
  and a sync hands one more off when notifications came while it ran), and a custom role for
  channel tokens in Secret Manager (``secrets.create`` is checked on the project, so it cannot
  be narrowed to a name prefix by an IAM condition);
- deploy: ``drive_notifications`` (HTTP, ``--allow-unauthenticated``: Drive cannot present
  credentials, the channel token is checked instead; no Drive secret, a small instance) and
  ``push_worker`` on the push topic (``--retry``), with its invoker grant.

The env the functions need (:func:`push_env`) goes into every function's ``--set-env-vars``;
the webhook's address is the gen2 function's ``cloudfunctions.net`` URL, known before deploy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deploy.package_gcp import Command, DeployConfig

TOKEN_ROLE = "drivepipeChannelTokens"
TOKEN_PERMISSIONS = (
    "secretmanager.secrets.create",
    "secretmanager.secrets.delete",
    "secretmanager.versions.add",
    "secretmanager.versions.access",
)


def push_topic(cfg: DeployConfig) -> str:
    """The topic notifications hand their syncs to."""
    return f"{cfg.prefix}-push"


def webhook_url(cfg: DeployConfig) -> str:
    """The public address Drive delivers to (a gen2 function's cloudfunctions.net URL)."""
    return f"https://{cfg.region}-{cfg.project}.cloudfunctions.net/{cfg.prefix}-notifications"


def push_env(cfg: DeployConfig) -> dict[str, str]:
    """What every function needs to know about push (the pipelines file reads DRIVEPIPE_PUSH)."""
    return {
        "DRIVEPIPE_PUSH": "true",
        "DRIVEPIPE_PUSH_TOPIC": f"projects/{cfg.project}/topics/{push_topic(cfg)}",
        "DRIVEPIPE_CHANNEL_SECRETS": f"gcp-sm:projects/{cfg.project}",
        "DRIVEPIPE_PUSH_ADDRESS": webhook_url(cfg),
    }


def push_setup_commands(cfg: DeployConfig) -> list[Command]:
    """The push topic, its publisher grant, and the channel-token role."""
    from deploy.package_gcp import _cmd

    p = f"--project={cfg.project}"
    member = f"--member=serviceAccount:{cfg.runtime_sa}"
    return [
        _cmd("gcloud", "pubsub", "topics", "create", push_topic(cfg), p, why="push hand-offs"),
        _cmd(
            "gcloud", "pubsub", "topics", "add-iam-policy-binding", push_topic(cfg), p, member,
            "--role=roles/pubsub.publisher",
            why="the webhook (and a sync notified while it ran) hands syncs off here",
        ),
        _cmd(
            "gcloud", "iam", "roles", "create", TOKEN_ROLE, p,
            "--title=drivepipe channel tokens", f"--permissions={','.join(TOKEN_PERMISSIONS)}",
            why="one random token per Drive channel, created and deleted at renewal",
        ),
        _cmd(
            "gcloud", "projects", "add-iam-policy-binding", cfg.project, member,
            f"--role=projects/{cfg.project}/roles/{TOKEN_ROLE}",
            why="secrets.create is checked on the project",
        ),
    ]  # fmt: skip


def push_deploy_commands(
    cfg: DeployConfig, common: tuple[str, ...], event: tuple[str, ...]
) -> list[Command]:
    """``drive_notifications`` (public) and ``push_worker``, and the worker's invoker."""
    from deploy.package_gcp import _cmd, _invoker_bindings

    webhook = tuple(w for w in common if not w.startswith(("--set-secrets=", "--max-instances=")))
    return [
        _cmd(
            "gcloud", "functions", "deploy", cfg.function_name("drive_notifications"), *webhook,
            "--entry-point=drive_notifications", "--trigger-http", "--allow-unauthenticated",
            "--memory=512Mi", "--timeout=60s", "--max-instances=20",
            why="Drive's notifications: public, checked by channel id and token; no Drive secret",
        ),
        _cmd(
            "gcloud", "functions", "deploy", cfg.function_name("push_worker"), *common,
            "--entry-point=push_worker", f"--trigger-topic={push_topic(cfg)}", *event,
            why="runs the owed sync; a burst of notifications becomes one sync",
        ),
        *_invoker_bindings(cfg, "push_worker"),
    ]  # fmt: skip
