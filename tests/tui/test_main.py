"""The ``qmonitor`` command line."""

from __future__ import annotations

import pytest

from tui.__main__ import main


@pytest.mark.usefixtures("config_file_reset")
def test_a_missing_config_file_is_reported_with_status_2(tmp_path, capsys):
    assert main(["--config-file", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err


def test_help_names_the_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "--config-file" in capsys.readouterr().out


@pytest.mark.usefixtures("config_file_reset")
def test_main_runs_the_app_on_the_configured_source(monkeypatch, tmp_path):
    ran = {}

    def fake_run(self):
        ran["source"] = self.source

    monkeypatch.setattr("tui.app.QMonitorApp.run", fake_run)
    config = tmp_path / "q.toml"
    config.write_text(f'name = "night"\nstore = "sqlite:///{tmp_path}/q.sqlite3"\n')
    assert main(["--config-file", str(config)]) == 0
    assert ran["source"].name == "night"
