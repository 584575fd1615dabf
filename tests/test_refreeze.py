"""`signals freeze --from OLD.json`: a refused frozen file's parameters, frozen again under the
current code with an audit trail (real CLI subprocesses, real files, a real runner).

The old files are the ones `tests/test_identity_pinned.py` builds: scalping and swing as frozen
before the tolerant comparisons, which every command now refuses.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from signals.frozen import (
    DataInfo,
    FrozenFileError,
    FrozenParams,
    WalkForwardInfo,
    freeze,
    load_frozen,
    write_frozen,
)
from signals.identity import identity
from signals.refreeze import refreeze
from strategies import get_strategy
from tests.candles import random_walk
from tests.livekit import ROOT, seed_db, start_runner, status, stop_runner, wait_listening
from tests.test_identity_pinned import frozen_before_tolerance

# what a walk-forward of the old code recorded: passes the default gate with room to spare
PASSING: dict[str, float | None] = {
    "sharpe": 3.0,
    "dsr": 0.99,
    "pbo": 0.01,
    "trades": 120.0,
    "max_drawdown": -0.05,
}
GATE_KEYS = ("sharpe", "dsr", "pbo", "trades", "max_drawdown")


def signals(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess."""
    cmd = [sys.executable, "-m", "signals", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def old_file(tmp_path: Path, name: str = "scalping") -> Path:
    """A file of `name` frozen before the tolerant comparisons, with old walk-forward metrics."""
    return frozen_before_tolerance(
        name, tmp_path / f"old-{name}.json", symbol="ETHUSDT", direction="both", metrics=PASSING,
        costs={"fee_bps": 5.5}, data=DataInfo(source="candles.db", rows=9000),
        walkforward=WalkForwardInfo(scheme="rolling", folds=6, trials=100, seed=42),
    )  # fmt: skip


def error_line(stderr: str) -> str:
    [line] = [x for x in stderr.splitlines() if x.startswith("error:")]
    return line


@pytest.mark.parametrize("name", ["scalping", "swing"])
def test_from_freezes_the_same_parameters_under_the_current_code(name: str, tmp_path: Path) -> None:
    old = old_file(tmp_path, name)
    with pytest.raises(FrozenFileError, match="its module and its behaviour"):
        load_frozen(old)  # what the runner, promote and paper report do with it
    before = json.loads(old.read_text())
    new = tmp_path / "new.json"
    done = signals("freeze", "--from", str(old), "--out", str(new))
    assert done.returncode == 0, done.stderr
    assert f"re-frozen from {old}" in done.stdout
    assert "its behaviour under the current code: changed" in done.stdout
    frozen = load_frozen(new)  # the runner's verification: accepted
    impl = get_strategy(name)
    assert frozen.params == before["params"]
    assert (frozen.strategy, frozen.timeframe, frozen.symbol) == (name, impl.timeframes[0],
                                                                  "ETHUSDT")  # fmt: skip
    assert frozen.direction == "both" and frozen.costs == {"fee_bps": 5.5}
    assert frozen.identity is not None
    assert frozen.identity.model_dump() == identity(impl, frozen.timeframe, impl.params())
    trail = frozen.refrozen_from
    assert trail is not None
    assert trail.sha256 == hashlib.sha256(old.read_bytes()).hexdigest()
    assert trail.path == str(old.resolve()) and trail.params_id == before["params_id"]
    assert trail.identity is not None and trail.identity.model_dump() == before["identity"]
    assert trail.behaviour_matched is False and trail.sealed
    assert trail.created_at == before["created_at"]
    assert trail.dropped == ["data", "walkforward", "metrics"]  # the old code's evidence:
    assert frozen.data is None and frozen.walkforward is None and frozen.metrics is None
    assert json.loads(old.read_text()) == before  # the old file is left as it was


def test_the_runner_starts_on_the_refrozen_file_and_refuses_the_old_one(tmp_path: Path) -> None:
    old, new, sock, db = (
        old_file(tmp_path),
        tmp_path / "new.json",
        tmp_path / "s.sock",
        (tmp_path / "candles.db"),
    )
    seed_db(db, random_walk(300, seed=5), "1m", 300)
    refused = signals("live", "--params", str(old), "--db", str(db), "--socket", str(sock))
    assert refused.returncode == 2 and "its module and its behaviour" in refused.stderr
    assert not sock.exists()
    assert signals("freeze", "--from", str(old), "--out", str(new)).returncode == 0
    proc = start_runner(new, db, sock)
    try:
        wait_listening(sock, proc)
        assert status(sock)["params_id"] == load_frozen(new).params_id
    finally:
        stop_runner(proc, signal.SIGKILL)


def test_the_refusal_ends_with_the_command_and_the_command_works(tmp_path: Path) -> None:
    folder = tmp_path / "with space"
    folder.mkdir()
    old = old_file(folder)
    done = signals("promote", str(old), "--to", str(tmp_path / "live.json"))
    assert done.returncode == 2
    line = error_line(done.stderr)
    assert "strategy 'scalping' changed since this file was frozen: its module and its" in line
    remedy = "re-freeze its parameters with: signals freeze --from "
    assert line.endswith(remedy + shlex.quote(str(old)))
    command = shlex.split(line.split(remedy)[1])  # the path quoted as a shell reads it
    again = signals("freeze", "--from", *command)
    assert again.returncode == 0, again.stderr
    refrozen = load_frozen(folder / "old-scalping.refrozen.json")  # beside it, without --out
    assert refrozen.params == json.loads(old.read_text())["params"]
    # a file frozen before identity (strategy_hash only): the same remedy
    doc = json.loads(freeze(strategy="ema_cross", timeframe="1m", params={}).model_dump_json())
    doc.pop("identity")
    doc["strategy_hash"] = "0" * 64  # as if the code changed since: written sealed, not edited
    legacy = write_frozen(FrozenParams.model_validate(doc), tmp_path / "legacy.json")
    with pytest.raises(FrozenFileError) as caught:
        load_frozen(legacy)
    assert str(caught.value).endswith(remedy + str(legacy))


@pytest.mark.parametrize(
    ("before", "after", "caught_by"),
    [
        ('"threshold": 0.6', '"threshold": 0.7', "params_id"),
        ('"dsr": 0.99', '"dsr": 0.5', "checksum"),
    ],
)
def test_a_hand_edited_old_file_is_refused_by_from(
    before: str, after: str, caught_by: str, tmp_path: Path
) -> None:
    old, new = old_file(tmp_path), tmp_path / "new.json"
    text = old.read_text()
    edited = text.replace(before, after)
    assert edited != text
    old.write_text(edited)
    done = signals("freeze", "--from", str(old), "--out", str(new))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    line = error_line(done.stderr)
    assert line.startswith(
        f"error: {old}: {caught_by}" if caught_by == "params_id" else f"error: {old}: "
    )
    assert caught_by in line and "edited by hand" in line
    assert not new.exists() and not (tmp_path / "old-scalping.refrozen.json").exists()


def test_promote_does_not_pass_a_refrozen_file_on_the_old_metrics(tmp_path: Path) -> None:
    # an old file the current code accepts, whose metrics pass the gate
    passing = write_frozen(
        freeze(strategy="ema_cross", timeframe="1m", params={}, metrics=PASSING),
        tmp_path / "passing.json",
    )
    promoted = tmp_path / "promoted.json"  # passed the gate: with its promotion block
    assert signals("promote", str(passing), "--to", str(promoted)).returncode == 0
    plain = tmp_path / "plain.json"
    assert signals("freeze", "-s", "ema_cross", "-t", "1m", "--out", str(plain)).returncode == 0
    for source, dropped in ((promoted, ["metrics", "promotion"]),
                            (old_file(tmp_path), ["data", "walkforward", "metrics"])):  # fmt: skip
        new, target = tmp_path / "new.json", tmp_path / "live.json"
        done = signals("freeze", "--from", str(source), "--out", str(new))
        assert done.returncode == 0, done.stderr
        refrozen = load_frozen(new)
        assert refrozen.metrics is None and refrozen.promotion is None
        assert refrozen.refrozen_from is not None and refrozen.refrozen_from.dropped == dropped
        assert f"{', '.join(dropped)} of {source} not carried over" in done.stdout
        assert "`signals promote` refuses this file on the gate" in done.stdout
        refused = signals("promote", str(new), "--to", str(target))
        assert refused.returncode == 1 and not target.exists()
        assert "passed the gate" not in refused.stdout
        gate = [x for x in refused.stderr.splitlines() if x.startswith("gate:")]
        assert [x.split()[1] for x in gate] == [f"{k}:" for k in GATE_KEYS]
        assert all("missing from the file's out-of-sample metrics" in x for x in gate)
        baseline = signals("promote", str(plain), "--to", str(target))  # a plain freeze file
        assert (
            baseline.returncode == 1
            and [x for x in baseline.stderr.splitlines() if x.startswith("gate:")] == gate
        )  # at least as strict: the same failures
    forced = signals("promote", str(new), "--to", str(target), "--force")
    assert forced.returncode == 0 and "FORCED past the gate" in forced.stdout
    live = load_frozen(target)
    assert live.promotion is not None and live.promotion.forced and live.refrozen_from is not None


def test_set_overrides_the_files_parameters_and_a_contradiction_is_an_error(
    tmp_path: Path,
) -> None:
    old, new = old_file(tmp_path), tmp_path / "new.json"
    done = signals("freeze", "--from", str(old), "--out", str(new), "--set", "threshold=0.9",
                   "--set", "cooldown=7", "--direction", "short", "-s", "scalping", "-t", "1m",
                   "--symbol", "ETHUSDT")  # fmt: skip
    assert done.returncode == 0, done.stderr
    frozen, before = load_frozen(new), json.loads(old.read_text())
    assert frozen.params == {**before["params"], "threshold": 0.9, "cooldown": 7}
    assert frozen.direction == "short" and frozen.params_id != before["params_id"]
    assert frozen.refrozen_from is not None
    assert frozen.refrozen_from.params_id == before["params_id"]
    for option, value, field in (("-s", "swing", "strategy"), ("-t", "5m", "timeframe"),
                                 ("--symbol", "BTCUSDT", "symbol")):  # fmt: skip
        other = tmp_path / f"other-{field}.json"
        wrong = signals("freeze", "--from", str(old), "--out", str(other), option, value)
        assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
        assert error_line(wrong.stderr) == (
            f"error: {old} is a frozen file of {field} {before[field]!r}, not {value!r}: "
            f"--from re-freezes the file's own {field} (leave the option out, or freeze without "
            "--from)"
        )
        assert not other.exists()
    bad = signals("freeze", "--from", str(old), "--out", str(tmp_path / "x.json"), "--set",
                  "nope=1")  # fmt: skip
    assert bad.returncode == 2 and "nope" in bad.stderr and not (tmp_path / "x.json").exists()


def test_an_unsealed_file_frozen_before_identity_is_refrozen_beside_it(tmp_path: Path) -> None:
    doc = json.loads(freeze(strategy="ema_cross", timeframe="1m", params={"fast": 4, "slow": 9},
                            metrics=PASSING).model_dump_json())  # fmt: skip
    doc.pop("identity")
    doc.pop("checksum")  # written before frozen files were sealed, too
    doc["strategy_hash"] = "0" * 64
    old = tmp_path / "legacy.json"
    old.write_text(json.dumps(doc, sort_keys=True, indent=2) + "\n")
    done = signals("freeze", "--from", str(old))
    assert done.returncode == 0, done.stderr
    assert f"{old}: no checksum" in done.stderr  # the same warning as the runner's
    frozen = load_frozen(tmp_path / "legacy.refrozen.json")
    assert frozen.params == doc["params"] and frozen.params["fast"] == 4 and frozen.checksum
    trail = frozen.refrozen_from
    assert trail is not None and trail.identity is None and trail.behaviour_matched is None
    assert trail.strategy_hash == "0" * 64 and not trail.sealed
    assert "unknown (no identity)" in done.stdout


def test_a_file_without_the_new_entry_keeps_its_format_and_checksum(tmp_path: Path) -> None:
    plain = write_frozen(freeze(strategy="ema_cross", timeframe="1m", params={}),
                         tmp_path / "plain.json")  # fmt: skip
    doc = json.loads(plain.read_text())
    assert "refrozen_from" not in doc  # sealed by the rule of the files written before it:
    rest = {key: value for key, value in doc.items() if key != "checksum"}
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert doc["checksum"] == hashlib.sha256(canonical.encode()).hexdigest()
    refrozen = tmp_path / "re.json"
    assert signals("freeze", "--from", str(plain), "--out", str(refrozen)).returncode == 0
    doc = json.loads(refrozen.read_text())
    assert doc["refrozen_from"]["behaviour_matched"] is True  # ema_cross did not change
    doc["refrozen_from"]["sha256"] = "0" * 64  # the checksum covers the new entry
    refrozen.write_text(json.dumps(doc, sort_keys=True, indent=2) + "\n")
    with pytest.raises(FrozenFileError, match="checksum"):
        load_frozen(refrozen)


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fast=st.integers(2, 20),
    gap=st.integers(1, 30),
    threshold=st.sampled_from([0.5, 1.0]),
    symbol=st.sampled_from(["BTCUSDT", "ETHUSDT", "SOLUSDT"]),
    direction=st.sampled_from(["long", "short", "both"]),
    fee=st.floats(0, 20, allow_nan=False),
)
def test_refreeze_keeps_every_setting_and_names_the_file_for_any_file(
    tmp_path: Path, fast: int, gap: int, threshold: float, symbol: str, direction: str, fee: float
) -> None:
    params = {"fast": fast, "slow": fast + 3 + gap, "threshold": threshold}
    old = write_frozen(freeze(strategy="ema_cross", timeframe="5m", params=params, symbol=symbol,
                              direction=direction, costs={"fee_bps": fee}, metrics=PASSING),
                       tmp_path / "old.json")  # fmt: skip
    before = load_frozen(old)
    new = write_frozen(refreeze(old), tmp_path / "new.json")
    frozen = load_frozen(new)
    assert (frozen.strategy, frozen.timeframe, frozen.symbol, frozen.direction, frozen.costs) == (
        before.strategy,
        before.timeframe,
        before.symbol,
        before.direction,
        before.costs,
    )
    assert frozen.params == before.params and frozen.params_id == before.params_id
    assert frozen.metrics is None and frozen.identity == before.identity
    trail = frozen.refrozen_from
    assert trail is not None and trail.behaviour_matched and trail.dropped == ["metrics"]
    assert trail.sha256 == hashlib.sha256(old.read_bytes()).hexdigest()
