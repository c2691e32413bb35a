"""Settings layering: defaults, settings.toml, XRESOURCE_ environment; validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from xresource.errors import ManifestError
from xresource.manifests import load_manifests
from xresource.settings import load_settings


def test_defaults() -> None:
    settings = load_settings()
    assert settings.registry.watch_debounce_ms < 1600  # watchfiles' own default is too slow
    assert settings.registry.drain_timeout > 0


def test_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "settings.toml"
    file.write_text("[registry]\ndrain_timeout = 7\nconnect_timeout = 3\n[resources.csv]\ndelimiter = ';'\n")
    monkeypatch.setenv("XRESOURCE_REGISTRY__DRAIN_TIMEOUT", "9")
    settings = load_settings(file)
    assert settings.registry.drain_timeout == 9  # environment wins over the file
    assert settings.registry.connect_timeout == 3
    assert settings.defaults_for("csv") == {"delimiter": ";"}


def test_settings_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "s.toml"
    file.write_text("[registry]\nretry_max = 5\n")
    monkeypatch.setenv("XRESOURCE_SETTINGS_FILE", str(file))
    assert load_settings().registry.retry_max == 5


def test_per_type_defaults_are_overridden_by_manifests(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text("[resources.csv]\ndelimiter = ';'\nencoding = 'latin-1'\n")
    manifests = tmp_path / "m"
    manifests.mkdir()
    (manifests / "a.yaml").write_text("name: a\ntype: csv\nfile_path: a.csv\n")
    (manifests / "b.yaml").write_text("name: b\ntype: csv\nfile_path: b.csv\ndelimiter: '|'\n")
    result = load_manifests(manifests, load_settings(settings_file))
    assert result.ok, result.problems
    assert result.resources["a"].delimiter == ";"  # type: ignore[attr-defined]
    assert result.resources["a"].encoding == "latin-1"  # type: ignore[attr-defined]
    assert result.resources["b"].delimiter == "|"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[registry]\ndrain_timeout = 'soon'\n", "drain_timeout"),
        ("[registry]\nno_such_setting = 1\n", "no_such_setting"),
        ("[resources.postgress]\nmax_pool_size = 3\n", "postgress"),
        ("[resources.csv]\nno_such_field = 1\n", "no_such_field"),
    ],
)
def test_invalid_settings_are_reported_with_the_file(tmp_path: Path, text: str, needle: str) -> None:
    file = tmp_path / "settings.toml"
    file.write_text(text)
    with pytest.raises(ManifestError) as info:
        load_settings(file)
    assert str(file) in str(info.value)
    assert needle in str(info.value)


def test_missing_settings_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
