"""Deployment: vendoring, pinned requirements and the generated gcloud commands."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from deploy import package_gcp
from deploy.package_gcp import (
    GCS_AGENT,
    Command,
    DeployConfig,
    deploy_commands,
    requirement_problems,
    setup_commands,
    stage_source,
    teardown_commands,
)


def config(**changes: object) -> DeployConfig:
    base: dict[str, object] = {
        "project": "acme-data",
        "region": "europe-west1",
        "input_bucket": "acme-in",
        "output_bucket": "acme-out",
    }
    base.update(changes)
    return DeployConfig(**base)  # type: ignore[arg-type]


def flags(command: Command) -> dict[str, str]:
    """``--name=value`` flags as a dict (bare flags map to "")."""
    out = {}
    for word in command.argv:
        if word.startswith("--"):
            name, _, value = word.partition("=")
            out[name] = value
    return out


def deploys(cfg: DeployConfig) -> dict[str, dict[str, str]]:
    """Entry point → flags of its ``gcloud functions deploy``."""
    found = {}
    for command in deploy_commands(cfg):
        if command.argv[:3] == ("gcloud", "functions", "deploy"):
            f = flags(command)
            found[f["--entry-point"]] = f
    return found


def test_function_requirements_match_the_project_pins():
    assert requirement_problems() == []


def test_requirement_drift_is_reported(tmp_path: Path):
    reqs = tmp_path / "requirements.txt"
    reqs.write_text(
        "pandas==0.1 --hash=sha256:aa\nfunctions-framework\nboto3==1.44.5 \\\n"
        "    --hash=sha256:bb\n"
    )
    problems = requirement_problems(reqs)
    assert "pandas==0.1 but gcp.in says 3.1.1; run `make lock`" in problems
    assert "functions-framework: not pinned with ==" in problems
    assert "functions-framework==: no --hash" in problems
    assert "pyarrow: in gcp.in but not in requirements.txt; run `make lock`" in problems
    assert "boto3: the GCP functions never import it" in problems


def test_every_lock_is_complete_hashed_and_matches_its_in_file():
    from deploy import locks

    assert locks.all_problems() == []
    gcp = locks.read_lock(locks.GCP_LOCK)
    assert not {"boto3", "botocore", "s3transfer"} & set(gcp)
    assert {"google-cloud-storage", "functions-framework", "pandas"} <= set(gcp)
    dev = locks.read_lock(locks.DEV_LOCK)
    assert all(dev[name].version == pin.version for name, pin in gcp.items())  # as tested


def test_three_functions_with_the_right_triggers():
    cfg = config(drive_folder_id="1AbC", scheduled_pipelines=("sales",))
    by_entry = deploys(cfg)
    assert set(by_entry) == {"sync_http", "on_upload", "on_schedule"}
    http, upload, schedule = by_entry["sync_http"], by_entry["on_upload"], by_entry["on_schedule"]
    for f in by_entry.values():
        assert "--gen2" in f
        assert f["--runtime"] == "python311"
        assert f["--service-account"] == "drivepipe-fn@acme-data.iam.gserviceaccount.com"
        assert f["--set-secrets"] == "DRIVE_SERVICE_ACCOUNT_JSON=drive-sa:latest"
        assert "DRIVE_FOLDER_ID=1AbC" in f["--set-env-vars"].split(",")
        assert "DRIVEPIPE_OUTPUT_BUCKET=acme-out" in f["--set-env-vars"].split(",")
    assert "--trigger-http" in http and "--no-allow-unauthenticated" in http
    assert "--retry" not in http  # HTTP functions are never retried
    assert http["--timeout"] == "3600s"
    assert upload["--trigger-bucket"] == "acme-in"
    assert schedule["--trigger-topic"] == "drivepipe-schedule"
    for f in (upload, schedule):
        assert "--retry" in f
        assert f["--timeout"] == "540s"
        assert (
            f["--trigger-service-account"] == "drivepipe-trigger@acme-data.iam.gserviceaccount.com"
        )


def test_scheduler_job_publishes_the_pipeline_list():
    (job,) = [
        c
        for c in deploy_commands(config(scheduled_pipelines=("a", "b")))
        if c.argv[:3] == ("gcloud", "scheduler", "jobs")
    ]
    f = flags(job)
    assert f["--schedule"] == "0 * * * *"
    assert f["--topic"] == "drivepipe-schedule"
    assert json.loads(f["--message-body"]) == {"pipelines": ["a", "b"]}


def test_least_privilege_grants():
    grants = {
        (
            flags(c).get("--member"),
            flags(c).get("--role"),
            c.argv[c.argv.index("add-iam-policy-binding") + 1],
        )
        for c in setup_commands(config())
        if "add-iam-policy-binding" in c.argv
    }
    fn = "serviceAccount:drivepipe-fn@acme-data.iam.gserviceaccount.com"
    assert (fn, "roles/storage.objectViewer", "gs://acme-in") in grants
    assert (fn, "roles/storage.objectAdmin", "gs://acme-out") in grants
    assert (fn, "roles/secretmanager.secretAccessor", "drive-sa") in grants
    assert not any(member == fn and c_target == "acme-data" for member, _, c_target in grants), (
        "the runtime SA must not get project-wide roles"
    )


def test_env_values_with_commas_switch_the_delimiter():
    cfg = config(extra_env={"DRIVEPIPE_TAGS": "a,b"})
    env_flag = deploys(cfg)["sync_http"]["--set-env-vars"]
    assert env_flag.startswith("^|^")
    assert "DRIVEPIPE_TAGS=a,b" in env_flag[3:].split("|")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"output_bucket": "acme-in"}, "must differ"),
        ({"input_bucket": "Bad_Bucket"}, "not a valid GCS bucket"),
        ({"event_timeout_s": 541}, "event timeout"),
        ({"http_timeout_s": 3601}, "HTTP timeout"),
        ({"runtime": "python39"}, "runtime must be"),
    ],
)
def test_invalid_deploy_settings_are_refused(changes: dict[str, object], message: str):
    with pytest.raises(ValueError, match=message):
        config(**changes)


def test_cli_prints_a_script_and_refuses_bad_input(capsys: pytest.CaptureFixture[str]):
    assert package_gcp.main(["--project", "acme-data", "--region", "us-central1"]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#!/usr/bin/env bash\nset -euo pipefail")
    assert script.count("gcloud functions deploy") == 3
    assert "cp -R shared build/gcp/source/shared" in script  # the script vendors the core
    assert "--source=build/gcp/source" in script
    # the GCS service agent is looked up by the script itself
    assert '"--member=serviceAccount:$(gcloud storage service-agent --project=acme-data)"' in script
    assert package_gcp.main(["--teardown"]) == 0
    assert capsys.readouterr().out.count("gcloud functions delete") == 3
    assert package_gcp.main(["--input-bucket", "same", "--output-bucket", "same"]) == 2


def test_stage_source_vendors_the_core(tmp_path: Path):
    src = stage_source(tmp_path / "src")
    assert (src / "main.py").read_text() == (package_gcp.SOURCE_DIR / "main.py").read_text()
    for name in (
        "requirements.txt",
        "drivepipe.toml",
        ".gcloudignore",
        "shared/triggers/service.py",
        "shared/triggers/events.py",
        "shared/storage/gcs.py",
    ):
        assert (src / name).is_file(), name
    assert not list(src.rglob("__pycache__"))
    # re-vendoring replaces, never merges, an older copy
    (src / "shared" / "stale.py").write_text("x = 1\n")
    stage_source(tmp_path / "src")
    assert not (src / "shared" / "stale.py").exists()


GCLOUD = shutil.which("gcloud")


@pytest.mark.slow  # ~1-5 s of gcloud start-up per command
@pytest.mark.timeout(900)
@pytest.mark.skipif(GCLOUD is None, reason="gcloud CLI is not installed")
def test_gcloud_accepts_every_generated_command(tmp_path: Path):
    """gcloud parses each command offline; with no account it stops at auth, not at a flag."""
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp_path),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "1",
    }
    cfg = config(drive_folder_id="1AbC", scheduled_pipelines=("sales",))
    commands = setup_commands(cfg) + deploy_commands(cfg) + teardown_commands(cfg)
    commands = [c for c in commands if c.argv[0] == "gcloud"]  # not the staging steps
    commands += [replace(c, argv=c.update) for c in commands if c.update]  # create-or-update
    shapes: dict[tuple[str, ...], Command] = {}  # one command per verb and set of flags
    for c in commands:
        flag_names = tuple(sorted(w.split("=", 1)[0] for w in c.argv if w.startswith("--")))
        shapes.setdefault((*c.argv[:4], *flag_names), c)
    commands = list(shapes.values())
    (tmp_path / "drive-sa.json").write_text("{}")  # gcloud reads --data-file before auth
    argvs = [
        [
            w.replace(GCS_AGENT, "service-1@gs-project-accounts.iam.gserviceaccount.com")
            for w in c.argv
        ]
        for c in commands
    ]

    def parse(argv: list[str]) -> tuple[list[str], int, str]:
        result = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
        return argv, result.returncode, result.stderr

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(parse, argvs))
    for argv, code, stderr in results:
        assert "unrecognized arguments" not in stderr, (argv, stderr)
        assert "argument" not in stderr.lower() or "active account" in stderr, (argv, stderr)
        assert code == 1 and "active account" in stderr, (argv, stderr)


def test_printed_commands_are_exactly_the_commands_run():
    cfg = config(extra_env={"NOTE": 'it\'s a "test" $HOME'}, scheduled_pipelines=("a b",))
    for command in setup_commands(cfg) + deploy_commands(cfg) + teardown_commands(cfg):
        text = command.shell("agent@x.iam.gserviceaccount.com", multiline=True)
        assert shlex.split(text.replace("\\\n", " ")) == [
            w.replace(GCS_AGENT, "agent@x.iam.gserviceaccount.com") for w in command.argv
        ]


def test_reruns_create_or_update_instead_of_stopping_at_already_exists():
    cfg = config(fanout=True)
    commands = setup_commands(cfg) + deploy_commands(cfg)
    creates = [c for c in commands if "create" in c.argv[:4] and c.argv[0] == "gcloud"]
    assert creates and all(c.probe for c in creates), [c.argv for c in creates if not c.probe]
    (job,) = [c for c in commands if c.argv[1:3] == ("scheduler", "jobs")]
    assert job.probe[:4] == ("gcloud", "scheduler", "jobs", "describe")
    assert job.update[:5] == ("gcloud", "scheduler", "jobs", "update", "pubsub")
    script = package_gcp.render(deploy_commands(cfg))
    assert "then\n  gcloud scheduler jobs update pubsub drivepipe-hourly" in script
    # the workers come after the scheduler job in --deploy-only --fanout
    deployed = [c.argv[3] for c in deploy_commands(cfg) if c.argv[1:3] == ("functions", "deploy")]
    assert deployed[-2:] == ["drivepipe-work", "drivepipe-dead-letter"]


def test_run_skips_what_exists_and_updates_the_job(monkeypatch: pytest.MonkeyPatch):
    ran: list[list[str]] = []

    def fake_run(argv, **kwargs):
        ran.append(list(argv))
        exists = argv[:2] == ["gcloud", "scheduler"] or argv[:3] == ["gcloud", "pubsub", "topics"]
        return subprocess.CompletedProcess(argv, 0 if exists else 1, stdout="", stderr="")

    monkeypatch.setattr(package_gcp.subprocess, "run", fake_run)
    cfg = config()
    topic = [  # the schedule's topic (setup also creates the alerts topic)
        c
        for c in setup_commands(cfg)
        if c.argv[1:4] == ("pubsub", "topics", "create") and cfg.topic in c.argv
    ]
    job = [c for c in deploy_commands(cfg) if c.argv[1:3] == ("scheduler", "jobs")]
    assert package_gcp.run_commands(topic + job) == 0
    assert ran[0][:4] == ["gcloud", "pubsub", "topics", "describe"]  # exists: not created
    assert ran[1][:4] == ["gcloud", "scheduler", "jobs", "describe"]
    assert ran[2][:4] == ["gcloud", "scheduler", "jobs", "update"]
    assert len(ran) == 3


def test_the_deploy_script_stages_the_source_and_refuses_a_changed_core(tmp_path: Path):
    repo = tmp_path / "repo"
    shutil.copytree(package_gcp.REPO_ROOT / "shared", repo / "shared",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copytree(package_gcp.SOURCE_DIR, repo / "gcp_functions",
                    ignore=shutil.ignore_patterns("shared", "__pycache__"))  # fmt: skip
    script = package_gcp.render(package_gcp.stage_commands(Path("build/gcp/source")))
    (repo / "stage.sh").write_text(script)
    staged = subprocess.run(["bash", "stage.sh"], cwd=repo, capture_output=True, text=True)
    assert staged.returncode == 0, staged.stderr
    source = repo / "build/gcp/source"
    assert (source / "shared/triggers/gcp.py").is_file() and (source / "main.py").is_file()
    (repo / "shared/__init__.py").write_text("# changed after the script was generated\n")
    stale = subprocess.run(["bash", "stage.sh"], cwd=repo, capture_output=True, text=True)
    assert stale.returncode == 1 and "generate it again" in stale.stderr


def test_gcloudignore_keeps_keys_out_of_the_upload():
    ignored = (package_gcp.SOURCE_DIR / ".gcloudignore").read_text().splitlines()
    import fnmatch

    for name in ("service-account.json", "drive-sa.json", "my-credentials.json", ".env", "x.pem"):
        assert any(fnmatch.fnmatch(name, pattern) for pattern in ignored), name
    for name in ("main.py", "requirements.txt", "drivepipe.toml"):
        assert not any(fnmatch.fnmatch(name, pattern) for pattern in ignored), name


def test_builds_run_as_their_own_service_account():
    cfg = config()
    enabled = next(c for c in setup_commands(cfg) if c.argv[1:3] == ("services", "enable"))
    assert "iam.googleapis.com" in enabled.argv
    build_sa = "drivepipe-build@acme-data.iam.gserviceaccount.com"
    grants = [
        c.argv for c in setup_commands(cfg) if f"--member=serviceAccount:{build_sa}" in c.argv
    ]
    assert [next(w for w in g if w.startswith("--role=")) for g in grants] == [
        "--role=roles/cloudbuild.builds.builder"
    ]
    for f in deploys(cfg).values():
        assert f["--build-service-account"] == f"projects/acme-data/serviceAccounts/{build_sa}"


@pytest.mark.parametrize("fanout", [False, True])
def test_each_function_is_told_its_own_timeout(fanout: bool):
    """Gen2 has no remaining-time API: the core's time budget reads the deployed --timeout from
    DRIVEPIPE_TIMEOUT_SECONDS, so each function's variable must equal its own flag."""
    by_entry = deploys(config(fanout=fanout, http_timeout_s=1800, event_timeout_s=300))
    if fanout:
        assert {"fanout_worker", "fanout_dead_letter"} <= set(by_entry)
    for entry, f in by_entry.items():
        env = dict(pair.split("=", 1) for pair in f["--set-env-vars"].split(","))
        assert f["--timeout"] == env["DRIVEPIPE_TIMEOUT_SECONDS"] + "s", entry
        assert env["DRIVEPIPE_OUTPUT_BUCKET"] == "acme-out"  # the rest is kept
    assert by_entry["sync_http"]["--timeout"] == "1800s"
    assert by_entry["on_upload"]["--timeout"] == "300s"
