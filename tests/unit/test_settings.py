"""Settings are read from the process environment once, at the edge; the services get them from here."""

from __future__ import annotations

import pytest

from shared.settings import Settings


def test_the_app_settings_are_a_snapshot_of_the_environment_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AOAI_API_BASE", "https://before.example")
    settings = Settings()
    monkeypatch.setenv("AOAI_API_BASE", "https://after.example")  # a later change does not reach these settings

    assert settings.app_settings["AOAI_API_BASE"] == "https://before.example"
    assert Settings(app_settings={"AOAI_API_BASE": "given"}).app_settings == {"AOAI_API_BASE": "given"}


def test_a_variable_named_like_the_field_is_just_another_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_SETTINGS", "config.ProductionConfig")  # Flask's convention: not JSON, not a snapshot

    assert Settings().app_settings["APP_SETTINGS"] == "config.ProductionConfig"


def test_the_snapshot_holds_secrets_so_it_is_never_dumped_or_printed() -> None:
    settings = Settings(app_settings={"AOAI_API_KEY": "sk-snapshot-5f2"})

    assert "sk-snapshot-5f2" not in repr(settings)
    assert "app_settings" not in settings.model_dump()


@pytest.mark.parametrize(("environment", "local_stack"), [("local", True), ("pr", False), ("dev", False)])
def test_only_the_local_environment_is_the_local_stack(environment: str, local_stack: bool) -> None:
    assert Settings.model_validate({"GENAIOPS_ENV": environment}).local_stack is local_stack
