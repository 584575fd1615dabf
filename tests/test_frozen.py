"""The frozen parameter file: round trip, verification against the code, clear refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from signals.frozen import (
    FrozenFileError,
    dumps,
    freeze,
    load_frozen,
    typed_params,
    write_frozen,
)
from strategies import get_strategy, params_id


def frozen_file(tmp_path: Path, **overrides: object) -> Path:
    frozen = freeze(strategy="scalping", timeframe="1m", params={"ema_fast": 7}, **overrides)
    return write_frozen(frozen, tmp_path / "scalping.json")


def edit(path: Path, change) -> Path:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    return path


def test_round_trip_same_content_and_id(tmp_path: Path) -> None:
    path = frozen_file(tmp_path)
    loaded = load_frozen(path)
    assert dumps(loaded) == path.read_text()
    strategy = get_strategy("scalping")
    params = typed_params(loaded)
    assert params.ema_fast == 7 and params.ema_slow == strategy.params().ema_slow
    assert loaded.params_id == params_id(strategy, "1m", params)
    assert set(json.loads(path.read_text())) >= {
        "schema_version", "params_id", "strategy", "strategy_hash", "symbol", "timeframe",
        "params", "direction", "costs", "data", "walkforward", "metrics", "created_at",
        "code_version",
    }  # fmt: skip


def test_same_inputs_same_bytes_apart_from_created_at(tmp_path: Path) -> None:
    a = freeze(strategy="swing", timeframe="1h", params={}, created_at="2026-01-01T00:00:00+00:00")
    b = freeze(strategy="swing", timeframe="1h", params={}, created_at="2026-01-01T00:00:00+00:00")
    assert dumps(a) == dumps(b)


def test_unknown_key_suggests_closest(tmp_path: Path) -> None:
    path = edit(frozen_file(tmp_path), lambda d: d.update(timeframes="1m"))
    with pytest.raises(FrozenFileError, match=r"timeframes: unknown key; did you mean 'timeframe'"):
        load_frozen(path)


def test_unknown_param_suggests_closest(tmp_path: Path) -> None:
    path = edit(frozen_file(tmp_path), lambda d: d["params"].update(ema_fsat=3))
    with pytest.raises(FrozenFileError, match="did you mean 'ema_fast'"):
        load_frozen(path)


def test_wrong_schema_version_and_corrupt_json(tmp_path: Path) -> None:
    path = edit(frozen_file(tmp_path), lambda d: d.update(schema_version=99))
    with pytest.raises(FrozenFileError, match="schema_version 99 is not supported"):
        load_frozen(path)
    path.write_text('{"schema_version": 1, "params": ')
    with pytest.raises(FrozenFileError, match="not valid JSON"):
        load_frozen(path)
    with pytest.raises(FrozenFileError, match="not found"):
        load_frozen(tmp_path / "absent.json")


def test_strategy_hash_mismatch_is_refused_unless_allowed(tmp_path: Path) -> None:
    # a file frozen before the identity record (test_strategy_identity.py covers the new rule)
    old = edit(frozen_file(tmp_path), lambda d: d.pop("identity"))
    path = edit(old, lambda d: d.update(strategy_hash="0" * 64))
    with pytest.raises(FrozenFileError, match="strategy changed since this file was frozen"):
        load_frozen(path)
    assert load_frozen(path, allow_hash_mismatch=True).strategy == "scalping"


def test_hand_edited_params_are_detected(tmp_path: Path) -> None:
    path = edit(frozen_file(tmp_path), lambda d: d["params"].update(ema_fast=8))
    with pytest.raises(FrozenFileError, match="edited by hand"):
        load_frozen(path)


def test_unknown_strategy_and_wrong_timeframe(tmp_path: Path) -> None:
    path = edit(frozen_file(tmp_path), lambda d: d.update(strategy="scalpnig"))
    with pytest.raises(FrozenFileError, match="did you mean 'scalping'"):
        load_frozen(path)
    with pytest.raises(Exception, match="declares timeframes 1m, 5m, not 1h"):
        freeze(strategy="scalping", timeframe="1h", params={})


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = frozen_file(tmp_path)
    write_frozen(load_frozen(path), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scalping.json"]
    assert path.stat().st_mode & 0o644 == 0o644  # readable by a runner running as another user


def test_freeze_command_writes_a_loadable_file(tmp_path: Path) -> None:
    out = tmp_path / "swing.json"
    result = subprocess.run(
        [sys.executable, "-m", "signals", "freeze", "-s", "swing", "-t", "1h", "--out", str(out),
         "--set", "threshold=0.75"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    loaded = load_frozen(out)
    assert loaded.params["threshold"] == 0.75 and loaded.params_id in result.stdout
