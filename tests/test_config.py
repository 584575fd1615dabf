"""Settings: defaults need no file; unknown keys name the key and suggest the closest one."""

from __future__ import annotations

from pathlib import Path

import pytest

from signals.config import Settings, load_settings
from signals.errors import ConfigError


def test_defaults_need_no_file(tmp_path: Path) -> None:
    assert load_settings(cwd=tmp_path) == Settings()


def test_signals_yaml_in_cwd_is_read(tmp_path: Path) -> None:
    (tmp_path / "signals.yaml").write_text("costs:\n  fee_bps: 2.0\n")
    assert load_settings(cwd=tmp_path).costs.fee_bps == 2.0


def test_unknown_key_suggests_closest(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  source:\n    colums:\n      symbol: null\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    message = str(err.value)
    assert str(cfg) in message
    assert "data.source.colums: unknown key" in message
    assert "did you mean 'data.source.columns'" in message


def test_bad_value_names_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("costs:\n  fee_bps: -1\n")
    with pytest.raises(ConfigError, match=r"costs\.fee_bps"):
        load_settings(cfg)


def test_foreign_schema_mapping(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data:\n  source:\n    table: klines\n    symbol: BTCUSDT\n    timeframe: 1m\n"
        "    columns: {symbol: null, timeframe: null, closed: null, timestamp: open_time}\n"
    )
    src = load_settings(cfg).data.source
    assert src.columns.symbol is None and src.columns.closed is None
    assert src.columns.timestamp == "open_time" and src.timeframe == "1m"


def test_missing_config_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml")
