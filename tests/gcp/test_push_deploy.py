"""``package_gcp --push`` prints the public webhook function, the push worker and their setup."""

from __future__ import annotations

from deploy.package_gcp import DeployConfig, deploy_commands, setup_commands, teardown_commands
from deploy.push_gcp import TOKEN_PERMISSIONS, webhook_url


def config(push: bool) -> DeployConfig:
    return DeployConfig(
        project="demo",
        region="europe-west1",
        input_bucket="demo-in",
        output_bucket="demo-out",
        drive_folder_id="folder0",
        push=push,
    )


def deployed(cfg: DeployConfig) -> dict[str, tuple[str, ...]]:
    return {
        c.argv[3]: c.argv
        for c in deploy_commands(cfg)
        if c.argv[:3] == ("gcloud", "functions", "deploy")
    }


def test_the_webhook_is_the_only_unauthenticated_function() -> None:
    functions = deployed(config(push=True))
    webhook = functions["drivepipe-notifications"]
    assert "--entry-point=drive_notifications" in webhook and "--trigger-http" in webhook
    assert "--allow-unauthenticated" in webhook
    assert not any(w.startswith("--set-secrets=") for w in webhook)  # never needs Drive
    public = [n for n, argv in functions.items() if "--allow-unauthenticated" in argv]
    assert public == ["drivepipe-notifications"]
    assert "--no-allow-unauthenticated" in functions["drivepipe-sync"]
    worker = functions["drivepipe-push"]
    assert "--entry-point=push_worker" in worker and "--trigger-topic=drivepipe-push" in worker
    assert "--retry" in worker


def test_every_function_knows_where_push_goes() -> None:
    cfg = config(push=True)
    for argv in deployed(cfg).values():
        env = next(w for w in argv if w.startswith("--set-env-vars="))
        assert f"DRIVEPIPE_PUSH_ADDRESS={webhook_url(cfg)}" in env
        assert "DRIVEPIPE_PUSH_TOPIC=projects/demo/topics/drivepipe-push" in env
        assert "DRIVEPIPE_CHANNEL_SECRETS=gcp-sm:projects/demo" in env
    assert webhook_url(cfg) == (
        "https://europe-west1-demo.cloudfunctions.net/drivepipe-notifications"
    )


def test_setup_and_teardown() -> None:
    setup = [" ".join(c.argv) for c in setup_commands(config(push=True))]
    assert any("pubsub topics create drivepipe-push" in c for c in setup)
    role = next(c for c in setup if "iam roles create drivepipeChannelTokens" in c)
    assert all(p in role for p in TOKEN_PERMISSIONS)
    teardown = [" ".join(c.argv) for c in teardown_commands(config(push=True))]
    assert any("functions delete drivepipe-notifications" in c for c in teardown)
    assert any("functions delete drivepipe-push " in c + " " for c in teardown)


def test_without_push_nothing_changes() -> None:
    functions = deployed(config(push=False))
    assert "drivepipe-notifications" not in functions and "drivepipe-push" not in functions
    assert not any("--allow-unauthenticated" in argv for argv in functions.values())
    assert not any("drivepipe-push" in " ".join(c.argv) for c in setup_commands(config(False)))
