"""Settings come from AUDIOVERSE_* variables, typed, with embedded-profile defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from audioverse.config import Settings, SettingsError


def test_defaults_make_the_embedded_profile() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url is None
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.resolved_database_url.endswith("/var/audioverse.db")
    assert settings.resolved_storage_dir == Path("var/storage")
    assert settings.uses_sqlite


def test_environment_values_are_parsed_to_their_types() -> None:
    settings = Settings.from_env(
        {
            "AUDIOVERSE_DATA_DIR": "/srv/audioverse",
            "AUDIOVERSE_DATABASE_URL": "postgresql+asyncpg://db/audioverse",
            "AUDIOVERSE_MIGRATE_ON_STARTUP": "false",
            "AUDIOVERSE_DATABASE_POOL_SIZE": "25",
            "AUDIOVERSE_CORS_ALLOW_ORIGINS": "https://a.example, https://b.example",
            "AUDIOVERSE_READINESS_TIMEOUT_SECONDS": "0.5",
            "AUDIOVERSE_LOG_LEVEL": "",
            "UNRELATED": "ignored",
        }
    )
    assert settings.data_dir == Path("/srv/audioverse")
    assert not settings.uses_sqlite
    assert settings.migrate_on_startup is False
    assert settings.database_pool_size == 25
    assert settings.cors_allow_origins == ["https://a.example", "https://b.example"]
    assert settings.readiness_timeout_seconds == 0.5
    assert settings.log_level == "INFO"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUDIOVERSE_DATABASE_POOL_SIZE", "many"),
        ("AUDIOVERSE_LOG_LEVEL", "LOUD"),
        ("AUDIOVERSE_MIGRATE_ON_STARTUP", "perhaps"),
    ],
)
def test_a_bad_value_names_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name.removeprefix("AUDIOVERSE_").lower()):
        Settings.from_env({name: value})


def test_env_example_documents_every_setting() -> None:
    example = (Path(__file__).parents[1] / ".env.example").read_text()
    for field in Settings.__struct_fields__:
        assert f"AUDIOVERSE_{field.upper()}=" in example, field
