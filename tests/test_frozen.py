"""The frozen parameter file: round trip, verification against the code, clear refusals."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from signals.frozen import (
    FrozenFileError,
    FrozenParams,
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


def reseal(path: Path) -> Path:
    """Write the file's (edited) content again through the writer: sealed, as a tool would."""
    return write_frozen(FrozenParams.model_validate(json.loads(path.read_text())), path)


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
        "code_version", "checksum",
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
    # a file frozen before the identity record (test_strategy_identity.py covers the new rule),
    # written (sealed) as if the code changed since: not a hand edit
    old = edit(frozen_file(tmp_path), lambda d: d.pop("identity"))
    path = reseal(edit(old, lambda d: d.update(strategy_hash="0" * 64)))
    with pytest.raises(FrozenFileError, match="strategy changed since this file was frozen"):
        load_frozen(path)
    assert load_frozen(path, allow_hash_mismatch=True).strategy == "scalping"


def test_hand_edited_params_are_detected(tmp_path: Path) -> None:
    path = edit(frozen_file(tmp_path), lambda d: d["params"].update(ema_fast=8))
    with pytest.raises(FrozenFileError, match="edited by hand"):
        load_frozen(path)


@pytest.mark.parametrize("before_identity", [False, True])
def test_checksum_is_the_sha256_of_every_other_field(tmp_path: Path, before_identity) -> None:
    path = frozen_file(tmp_path)
    if before_identity:  # a file frozen before identity v2 keeps its format, without the key
        reseal(edit(path, lambda d: d.pop("identity")))
    doc = json.loads(path.read_text())
    assert ("identity" in doc) is not before_identity
    stored = doc.pop("checksum")
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert stored == hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["metrics"].update(dsr=0.99, trades=25.0),
        lambda d: d.update(promotion={"passed": True}),
        lambda d: d.update(symbol="ETHUSDT"),
        lambda d: d.update(checksum="0" * 64),
    ],
    ids=["metrics", "promotion", "symbol", "checksum"],
)
def test_any_hand_edit_is_refused_naming_the_file(tmp_path: Path, change) -> None:
    path = frozen_file(tmp_path, metrics={"sharpe": 1.0, "dsr": 0.24, "trades": 10.0})
    edit(path, change)
    with pytest.raises(FrozenFileError, match="does not match its checksum") as refused:
        load_frozen(path, allow_hash_mismatch=True)
    assert str(refused.value).startswith(f"{path}: ") and "\n" not in str(refused.value)


def test_layout_is_not_content(tmp_path: Path) -> None:
    path = frozen_file(tmp_path)
    doc = json.loads(path.read_text())
    path.write_text(json.dumps(dict(reversed(list(doc.items())))))  # one line, other key order
    assert load_frozen(path).checksum == doc["checksum"]


def test_a_file_without_checksum_loads_with_a_warning(tmp_path: Path, caplog) -> None:
    path = edit(frozen_file(tmp_path), lambda d: d.pop("checksum"))
    with caplog.at_level(logging.WARNING, logger="signals.frozen"):
        loaded = load_frozen(path)
    assert loaded.checksum is None
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"{path}: no checksum") and f"signals promote {path} --to {path}" in line
    write_frozen(loaded, path)  # any write seals it
    assert load_frozen(path).checksum == json.loads(path.read_text())["checksum"]


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
