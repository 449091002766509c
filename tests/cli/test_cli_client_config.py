"""Where the service client finds its address and key: the environment, ``LEAP_CONFIG``,
``$LEAP_HOME``, ``.leap/client.yaml`` in the working directory or any folder above it,
then the user's config; and an error that lists every place it looked."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml

from leap_cli.client import client_settings, config_files


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("LEAP_URL", "LEAP_API_KEY", "LEAP_HOME", "LEAP_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    return tmp_path


def write(path: Path, **values: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values))


def test_a_stack_config_is_found_from_any_folder_below_it(bare, monkeypatch):
    write(bare / "repo" / ".leap" / "client.yaml", url="http://127.0.0.1:8000/", key="leap_k1")
    deep = bare / "repo" / "examples" / "sweeps"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert client_settings() == ("http://127.0.0.1:8000", "leap_k1")


def test_the_nearest_config_wins_and_the_environment_over_all(bare, monkeypatch):
    write(bare / "repo" / ".leap" / "client.yaml", url="http://outer:8000", key="outer")
    write(bare / "repo" / "sub" / ".leap" / "client.yaml", url="http://inner:8000", key="inner")
    write(bare / "user" / ".config" / "leap" / "client.yaml", url="http://user:8000", key="user")
    monkeypatch.chdir(bare / "repo" / "sub")
    assert client_settings() == ("http://inner:8000", "inner")
    monkeypatch.setenv("LEAP_API_KEY", "from-env")
    assert client_settings() == ("http://inner:8000", "from-env")
    monkeypatch.chdir(bare)
    monkeypatch.delenv("LEAP_API_KEY")
    assert client_settings() == ("http://user:8000", "user")


def test_the_error_lists_every_place_it_looked(bare, monkeypatch, capsys):
    somewhere = bare / "a" / "b"
    somewhere.mkdir(parents=True)
    monkeypatch.chdir(somewhere)
    with pytest.raises(typer.Exit):
        client_settings()
    message = " ".join(capsys.readouterr().err.split())
    looked = [
        somewhere / ".leap" / "client.yaml",
        bare / "a" / ".leap" / "client.yaml",
        bare / ".leap" / "client.yaml",
        Path("/.leap/client.yaml"),
        bare / "user" / ".config" / "leap" / "client.yaml",
    ]
    assert message.startswith("error: no service address: set LEAP_URL, or url: in a client.yaml")
    for path in looked:
        assert str(path) in message
    assert config_files(somewhere)[0] == looked[0]
    assert config_files(somewhere)[-1] == looked[-1]
