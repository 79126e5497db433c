"""What the functions' service account may do outside Cloud Storage, read off the deploy script.

:func:`deploy.package_gcp.runtime_bucket_grants` gives the bucket roles the GCS permission proxy
enforces; these give the rest, for devstack's stand-ins to enforce in tests
(``tests/gcp/test_permissions.py``), so a grant missing from the printed ``gcloud`` commands
fails a test instead of a deploy:

- :func:`runtime_topic_grants`: the topics on which ``package_gcp`` grants the runtime service
  account ``roles/pubsub.publisher`` (``pubsub.topics.publish``): run notifications, fan-out
  work, push hand-offs;
- :func:`runtime_secret_grants`: Secret Manager permissions per resource: the Drive secret's
  ``roles/secretmanager.secretAccessor``, and the channel-token custom role, which is bound on
  the project because ``secretmanager.secrets.create`` is checked on the parent project (so a
  project grant is the only way to let the schedule create one secret per channel).
"""

from __future__ import annotations

from deploy.package_gcp import DeployConfig, setup_commands

PUBLISHER = "roles/pubsub.publisher"
# Predefined roles' Secret Manager permissions (Google's "Access control with IAM" table).
SECRET_ROLES = {"roles/secretmanager.secretAccessor": frozenset({"secretmanager.versions.access"})}


def _role(argv: tuple[str, ...]) -> str:
    return next(w.split("=", 1)[1] for w in argv if w.startswith("--role="))


def runtime_topic_grants(cfg: DeployConfig) -> set[str]:
    """``projects/P/topics/T`` of every topic the runtime service account may publish to."""
    member = f"--member=serviceAccount:{cfg.runtime_sa}"
    found = set()
    for command in setup_commands(cfg):
        argv = command.argv
        binding = argv[1:4] == ("pubsub", "topics", "add-iam-policy-binding")
        if binding and member in argv and _role(argv) == PUBLISHER:
            topic = argv[4]
            found.add(
                topic if topic.startswith("projects/") else f"projects/{cfg.project}/topics/{topic}"
            )
    return found


def runtime_secret_grants(cfg: DeployConfig) -> dict[str, frozenset[str]]:
    """Resource (``projects/P`` or ``projects/P/secrets/S``) -> the Secret Manager permissions
    the runtime service account holds there (custom roles as ``iam roles create`` defines them)."""
    member = f"--member=serviceAccount:{cfg.runtime_sa}"
    commands = [c.argv for c in setup_commands(cfg)]
    roles = dict(SECRET_ROLES)
    for argv in commands:
        if argv[1:4] == ("iam", "roles", "create"):
            listed = next(w.split("=", 1)[1] for w in argv if w.startswith("--permissions="))
            roles[f"projects/{cfg.project}/roles/{argv[4]}"] = frozenset(listed.split(","))
    grants: dict[str, frozenset[str]] = {}
    for argv in commands:
        if member not in argv or "add-iam-policy-binding" not in argv:
            continue
        if argv[1:3] == ("secrets", "add-iam-policy-binding"):
            resource = f"projects/{cfg.project}/secrets/{argv[3]}"
        elif argv[1:3] == ("projects", "add-iam-policy-binding"):
            resource = f"projects/{argv[3]}"
        else:
            continue
        permissions = roles.get(_role(argv), frozenset())
        secret_manager = frozenset(p for p in permissions if p.startswith("secretmanager."))
        if secret_manager:
            grants[resource] = grants.get(resource, frozenset()) | secret_manager
    return grants
