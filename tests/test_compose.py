"""docker-compose.yml matches the code: settings, commands, healthchecks, the bucket and the data volumes.

No Docker engine runs here, so the file is held to what the code provides instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from audioverse.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]
AUDIOVERSE = str(Path(sys.executable).parent / "audioverse")
ONE_SHOT = {"migrate", "createbucket"}


@cache
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def audioverse_commands() -> list[list[str]]:
    """Every ``audioverse …`` command line in the file: services' commands and healthchecks."""
    lines = []
    for service in services().values():
        for command in (service.get("command"), (service.get("healthcheck") or {}).get("test")):
            if isinstance(command, list):
                words = command[1:] if command[0] in {"CMD", "CMD-SHELL"} else command
                if words and words[0] == "audioverse":
                    lines.append(words)
    return lines


def test_every_audioverse_variable_is_a_setting() -> None:
    fields = {ENV_PREFIX + name.upper() for name in Settings.__struct_fields__}
    named = {
        variable
        for service in services().values()
        for variable in (service.get("environment") or {})
        if variable.startswith(ENV_PREFIX)
    }
    assert named, "the services configure the app through AUDIOVERSE_* variables"
    assert named - fields == set()


@pytest.mark.parametrize("words", audioverse_commands(), ids=lambda words: " ".join(words[:3]))
def test_every_audioverse_command_exists(words: list[str], tmp_path: Path) -> None:
    # The command's words up to its first option, asked for their help: an unknown command exits 2.
    command = [word for word in words[1:] if not word.startswith("-")][:2]
    environment = {**os.environ, "AUDIOVERSE_DATA_DIR": str(tmp_path), "AUDIOVERSE_SEED_DEMO_ON_STARTUP": "false"}
    for length in (len(command), 1):
        completed = subprocess.run(
            [AUDIOVERSE, *command[:length], "--help"], env=environment, capture_output=True, check=False, timeout=60
        )
        if completed.returncode == 0:
            break
    assert completed.returncode == 0, completed.stderr.decode()[-2000:]
    # Options too: each one the command line passes is one the command's help names.
    help_text = completed.stdout.decode()
    for option in (word.split("=")[0] for word in words if word.startswith("--")):
        if command[0] in {"worker", "scheduler"}:
            continue  # passed through to taskiq's own command line
        assert option in help_text, f"{' '.join(words)}: {option} is not an option of {' '.join(command)}"


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in services().items():
        if name in ONE_SHOT:
            continue
        assert (service.get("healthcheck") or {}).get("test"), f"{name} has no healthcheck"


def test_the_app_waits_for_its_database_schema_and_bucket() -> None:
    for name in ("api", "worker", "scheduler"):
        depends = services()[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["createbucket"]["condition"] == "service_completed_successfully"
    bucket = Settings().s3_bucket
    creates = " ".join(services()["createbucket"]["command"])
    assert re.search(rf"mc mb --ignore-existing \S+/{bucket}\b", creates)


def test_data_lives_in_named_volumes() -> None:
    declared = set(compose()["volumes"])
    for name, path in (("postgres", "/var/lib/postgresql/data"), ("meilisearch", "/meili_data"), ("minio", "/data")):
        mounts = [volume.split(":") for volume in services()[name].get("volumes", [])]
        assert [source for source, target, *_ in mounts if target == path and source in declared], name


def test_required_secrets_are_refused_when_missing() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for variable in ("AUDIOVERSE_SECRET_KEY", "MEILI_MASTER_KEY", "MINIO_ROOT_PASSWORD"):
        assert re.search(rf"\$\{{{variable}:\?", text), f"{variable} is not required"
        assert variable in (ROOT / "README.md").read_text()
