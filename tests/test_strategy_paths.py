"""Strategies from the user's folder: --strategy-path, identity v2, notebook strategies."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from research.inputs import prepare_run
from signals.data.store import connect_writable, write_candles
from signals.frozen import FrozenFileError, freeze, load_frozen, write_frozen
from signals.identity import NotSavedError
from signals.scan import signal_records
from signals.strategy_paths import StrategyFolderError, find_strategies, get_strategy
from strategies import indicators as ind
from strategies.base import Rule, RuleSet, Strategy
from strategies.params import ScoringParams, fixed, param
from tests.candles import random_walk
from tests.livekit import ROOT, seed_db, start_runner, stop_runner, wait_caught_up, wait_listening

MODULE = """
from dataclasses import dataclass

from strategies import indicators as ind
from strategies.base import Rule, RuleSet, Strategy
from strategies.params import ScoringParams, fixed, param


@dataclass(frozen=True, kw_only=True)
class MyParams(ScoringParams):
    threshold: float = fixed(1.0)
    cooldown: int = fixed(0)
    fast: int = param(FAST, low=2, high=50)
    slow: int = param(8, low=5, high=100)


class MyCross(Strategy[MyParams]):
    name = "my_cross"
    timeframes = ("1m", "5m")
    Params = MyParams
    description = "a user's EMA cross"

    def warmup(self, params):
        return 4 * params.slow

    def rules(self, candles, params):
        fast, slow = ind.ema(candles["close"], params.fast), ind.ema(candles["close"], params.slow)
        return RuleSet(
            buy=[Rule("up", ind.crossed_above(fast, slow))],
            sell=[Rule("down", ind.crossed_above(slow, fast))],
        )
"""


def write_module(folder: Path, fast: int = 3, extra: str = "") -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "mine.py"
    path.write_text(MODULE.replace("FAST", str(fast)) + extra)
    return path


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI of this checkout (cwd = its root); `cwd` holds the fingerprint cache."""
    return subprocess.run(
        [sys.executable, "-m", "signals", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, env={**__import__("os").environ, "SIGNALS_CACHE_DIR": str(cwd / ".cache")},
    )  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "mystrats"
    write_module(folder)
    db = tmp_path / "candles.db"
    conn = connect_writable(db)
    write_candles(conn, random_walk(600, seed=5), symbol="BTCUSDT", timeframe="1m")
    conn.close()
    return folder, db


def test_scan_backtest_freeze_from_a_folder(world: tuple[Path, Path], tmp_path: Path) -> None:
    folder, db = world
    common = ["--strategy-path", str(folder), "-s", "my_cross", "-t", "1m"]
    scan = cli("scan", *common, "--db", str(db), "--format", "jsonl", cwd=tmp_path)
    assert scan.returncode == 0, scan.stderr
    lines = [json.loads(line) for line in scan.stdout.splitlines() if line.strip()]
    assert lines and {line["strategy"] for line in lines} == {"my_cross"}
    back = cli("backtest", *common, "--db", str(db), cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    out = tmp_path / "mine.json"
    frozen = cli("freeze", *common, "-o", str(out), cwd=tmp_path)
    assert frozen.returncode == 0, frozen.stderr
    doc = json.loads(out.read_text())
    assert doc["strategy"] == "my_cross" and doc["identity"]["version"] == 2
    unknown = cli("scan", "-s", "my_cross", "-t", "1m", "--db", str(db), cwd=tmp_path)
    assert unknown.returncode != 0 and "unknown strategy 'my_cross'" in unknown.stderr
    listed = cli("strategies", "--strategy-path", str(folder), cwd=tmp_path)
    assert "my_cross" in listed.stdout
    # the config's strategy_paths finds it too
    (tmp_path / "signals.yaml").write_text(f"strategy_paths: [{folder}]\n")
    config = ["--config", str(tmp_path / "signals.yaml")]
    via_config = cli("scan", "-s", "my_cross", "-t", "1m", "--db", str(db), *config, cwd=tmp_path)
    assert via_config.returncode == 0, via_config.stderr


def test_a_name_defined_twice_names_both_files(tmp_path: Path) -> None:
    first, second = write_module(tmp_path / "a"), write_module(tmp_path / "b")
    with pytest.raises(StrategyFolderError, match="defined twice") as caught:
        find_strategies([first.parent, second.parent])
    assert str(first) in str(caught.value) and str(second) in str(caught.value)
    shadow = tmp_path / "c"
    shadow.mkdir()
    text = MODULE.replace("FAST", "3").replace('"my_cross"', '"swing"')
    (shadow / "swing2.py").write_text(text)
    with pytest.raises(StrategyFolderError, match=r"strategies/swing\.py.*swing2\.py"):
        find_strategies([shadow])
    both = ["--strategy-path", str(first.parent), "--strategy-path", str(second.parent)]
    run = cli("scan", *both, "-s", "my_cross", "-t", "1m", "--db", str(tmp_path / "x.db"),
              cwd=tmp_path)  # fmt: skip
    assert run.returncode != 0 and "defined twice" in run.stderr


def test_identity_comment_edit_keeps_the_file_and_a_rule_edit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNALS_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "s"
    write_module(folder)
    frozen = write_frozen(
        freeze(strategy=get_strategy("my_cross", [folder]), timeframe="1m", params={}),
        tmp_path / "f.json",
    )
    monkeypatch.setenv("SIGNALS_STRATEGY_PATH", str(folder))
    write_module(folder, extra="\n# a comment: cannot change a decision\n")
    assert load_frozen(frozen).strategy == "my_cross"  # module changed, behaviour the same
    write_module(folder, fast=4)  # a parameter default: the frozen params still say fast=3
    assert load_frozen(frozen).params["fast"] == 3
    rule = MODULE.replace("FAST", "3").replace(
        '"down", ind.crossed_above(slow, fast)', '"down", ind.crossed_above(slow, fast + 1e-3)'
    )
    (folder / "mine.py").write_text(rule)
    with pytest.raises(FrozenFileError, match=r"'my_cross' changed .*its module and its behav"):
        load_frozen(frozen)
    assert load_frozen(frozen, allow_hash_mismatch=True).strategy == "my_cross"


def test_a_default_edit_changes_a_file_frozen_with_defaults_only_through_params(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNALS_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "s"
    write_module(folder)
    frozen = freeze(strategy=get_strategy("my_cross", [folder]), timeframe="1m", params={})
    # a new default reaches the behaviour only through the params: the frozen ones are kept
    write_module(folder, fast=4)
    fresh = get_strategy("my_cross", [folder])
    assert fresh.params().fast == 4 and frozen.params["fast"] == 3


@dataclass(frozen=True, kw_only=True)
class NotebookParams(ScoringParams):
    threshold: float = fixed(1.0)
    cooldown: int = fixed(0)
    fast: int = param(3, low=2, high=20)


class NotebookCross(Strategy[NotebookParams]):
    name = "notebook_cross"
    timeframes = ("1m",)
    Params = NotebookParams
    description = "defined in a notebook cell"

    def warmup(self, params: NotebookParams) -> int:
        return 4 * 8

    def rules(self, candles: pd.DataFrame, params: NotebookParams) -> RuleSet:
        fast, slow = ind.ema(candles["close"], params.fast), ind.ema(candles["close"], 8)
        return RuleSet(
            buy=[Rule("up", ind.crossed_above(fast, slow))],
            sell=[Rule("down", ind.crossed_above(slow, fast))],
        )


def test_a_notebook_strategy_runs_through_the_api_and_refuses_to_freeze(
    world: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, db = world
    monkeypatch.setattr(NotebookCross, "__module__", "__main__")
    strategy = NotebookCross()
    run = prepare_run(strategy_name=strategy, db=db, timeframe="1m")
    assert run.strategy is strategy
    records = signal_records(run.candles, strategy, run.params, symbol="BTCUSDT", timeframe="1m")
    assert records and records[0]["params_id"]
    from research.backtest.run import run_backtest

    assert run_backtest(run.candles, strategy, timeframe="1m") is not None
    with pytest.raises(NotSavedError, match="save it in a module of a strategy folder") as caught:
        freeze(strategy=strategy, timeframe="1m", params={})
    assert "\n" not in str(caught.value)


def test_live_runs_a_folder_strategy(world: tuple[Path, Path], tmp_path: Path) -> None:
    folder, _ = world
    candles = random_walk(400, seed=7)
    db, sock = tmp_path / "live.db", tmp_path / "live.sock"
    seed_db(db, candles, "1m", 300)
    out = tmp_path / "mine.json"
    made = cli("freeze", "--strategy-path", str(folder), "-s", "my_cross", "-t", "1m",
               "-o", str(out), cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    proc = start_runner(out, db, sock, "--strategy-path", str(folder),
                        env={"SIGNALS_CACHE_DIR": str(tmp_path / ".cache")})  # fmt: skip
    try:
        wait_listening(sock, proc)
        wait_caught_up(sock, int(candles.index[299].timestamp()))
    finally:
        assert stop_runner(proc) == 0


LENIENT = ("--min-sharpe", "-100", "--min-dsr", "0", "--max-pbo", "1", "--min-trades", "0",
           "--max-drawdown", "1")  # fmt: skip


@pytest.fixture
def long_db(tmp_path: Path) -> Path:
    db = tmp_path / "long.db"
    conn = connect_writable(db)
    write_candles(conn, random_walk(3000, seed=5), symbol="BTCUSDT", timeframe="1m")
    conn.close()
    return db


def test_walkforward_with_helpers_and_promote_from_a_folder(
    world: tuple[Path, Path], long_db: Path, tmp_path: Path
) -> None:
    folder, _ = world
    out = tmp_path / "wf"
    journal = tmp_path / "run.log"
    walk = cli("walkforward", "--strategy-path", str(folder), "-s", "my_cross", "-t", "1m",
               "--db", str(long_db), "--folds", "2", "--trials", "3", "--min-trades", "0",
               "--out", str(out), "--no-report", "--storage", f"journal:///{journal}",
               "--workers", "2", "--heartbeat", "3", cwd=tmp_path, timeout=600)  # fmt: skip
    assert walk.returncode == 0, walk.stderr[-2000:]
    # the helper process (started with this command line and SIGNALS_STRATEGY_PATH) found the
    # strategy too: a helper that fails says "walk-forward helper <pid> ended with code 2"
    assert "helper" not in walk.stderr, walk.stderr[-2000:]
    assert json.loads((out / "frozen.json").read_text())["strategy"] == "my_cross"
    live = tmp_path / "live.json"  # two folds have no PBO: --force past the gate
    refused = cli("promote", str(out / "frozen.json"), "--to", str(live), "--force", cwd=tmp_path)
    assert refused.returncode == 2 and "unknown strategy 'my_cross'" in refused.stderr
    done = cli("promote", str(out / "frozen.json"), "--to", str(live), "--force",
               "--strategy-path", str(folder), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "FORCED past the gate" in done.stdout
    assert json.loads(live.read_text())["promotion"]["forced"]
    # the config's strategy_paths serves promote too
    (tmp_path / "signals.yaml").write_text(f"strategy_paths: [{folder}]\n")
    again = cli("promote", str(live), "--to", str(live), "--force",
                "--config", str(tmp_path / "signals.yaml"), cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr


@pytest.mark.slow
def test_reoptimise_a_folder_strategy(
    world: tuple[Path, Path], long_db: Path, tmp_path: Path
) -> None:
    folder, _ = world
    current = tmp_path / "current.json"
    made = cli("freeze", "--strategy-path", str(folder), "-s", "my_cross", "-t", "1m",
               "-o", str(current), cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    # strategy and timeframe come from --current (read with the folder), the notebook's kernel
    # finds the strategy through SIGNALS_STRATEGY_PATH
    done = cli("reoptimise", "--strategy-path", str(folder), "--current", str(current),
               "--quarter", "2024Q2", "--db", str(long_db), "--days", "2", "--folds", "2",
               "--trials", "3", "--train-min-trades", "0", "--out-root", str(tmp_path / "r"),
               *LENIENT, cwd=tmp_path, timeout=600)  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-3000:]  # ran: the gate may pass or refuse
    outcome = json.loads((tmp_path / "r" / "2024Q2" / "outcome.json").read_text())
    frozen = json.loads((tmp_path / "r" / "2024Q2" / "frozen.json").read_text())
    assert frozen["strategy"] == "my_cross" and outcome["new_params_id"] == frozen["params_id"]
    assert outcome["old_params_id"] == json.loads(current.read_text())["params_id"]


HELPERS = """
from strategies import indicators as ind


def fast_line(close, period):
    return ind.LINE(close, period)
"""

SIBLING = """
from dataclasses import dataclass

from strategies import indicators as ind
from strategies.base import Rule, RuleSet, Strategy
from strategies.params import ScoringParams, fixed, param

from .helpers import fast_line


@dataclass(frozen=True, kw_only=True)
class SiblingParams(ScoringParams):
    threshold: float = fixed(1.0)
    cooldown: int = fixed(0)
    fast: int = param(3, low=2, high=50)


class SiblingCross(Strategy[SiblingParams]):
    name = "NAME"
    timeframes = ("1m",)
    Params = SiblingParams

    def warmup(self, params):
        return 40

    def rules(self, candles, params):
        fast, slow = fast_line(candles["close"], params.fast), ind.ema(candles["close"], 8)
        return RuleSet(
            buy=[Rule("up", ind.crossed_above(fast, slow))],
            sell=[Rule("down", ind.crossed_above(slow, fast))],
        )
"""


def write_sibling_folder(folder: Path, line: str = "ema", name: str = "my_cross") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "helpers.py").write_text(HELPERS.replace("LINE", line))
    (folder / "mine.py").write_text(SIBLING.replace("NAME", name))
    return folder


def test_a_folder_module_imports_its_sibling_relatively(tmp_path: Path) -> None:
    one = write_sibling_folder(tmp_path / "one")
    (one / "strategies.py").write_text("SHADOW = True\n")  # a helper named like the package
    two = write_sibling_folder(tmp_path / "two", line="sma", name="other_cross")
    found = find_strategies([one, two])
    mine, other = found["my_cross"], found["other_cross"]
    # each folder is a package of its own: two helpers.py, each strategy with its own
    assert type(mine).__module__.rpartition(".")[0] != type(other).__module__.rpartition(".")[0]
    candles = random_walk(600, seed=5)
    close = candles["close"]
    assert (
        mine.rules(candles, mine.params())
        .buy[0]
        .fired.equals(ind.crossed_above(ind.ema(close, 3), ind.ema(close, 8)))
    )
    assert (
        other.rules(candles, other.params())
        .buy[0]
        .fired.equals(ind.crossed_above(ind.sma(close, 3), ind.ema(close, 8)))
    )
    assert not (one / "__pycache__").exists()  # nothing written into the user's folder
    # the folder's strategies.py is that folder's module, not the package the strategies import
    import strategies

    assert (
        not hasattr(strategies, "SHADOW") and Path(strategies.__file__).parent.name == "strategies"
    )
    # a module of the folder is found by name in a new process (SIGNALS_STRATEGY_PATH), so a
    # pickled folder strategy (a Dask job) loads there
    import pickle

    blob = tmp_path / "mine.pkl"
    blob.write_bytes(pickle.dumps(mine))
    code = (
        "import pickle, sys; import signals.strategy_paths; "
        f"print(pickle.loads(open({str(blob)!r}, 'rb').read()).name)"
    )
    env = {**__import__("os").environ, "SIGNALS_STRATEGY_PATH": str(one)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=60, cwd=ROOT)  # fmt: skip
    assert done.stdout.strip() == "my_cross", done.stderr
    # and through the CLI
    db = tmp_path / "c.db"
    conn = connect_writable(db)
    write_candles(conn, candles, symbol="BTCUSDT", timeframe="1m")
    conn.close()
    scan = cli("scan", "--strategy-path", str(one), "-s", "my_cross", "-t", "1m", "--db", str(db),
               "-f", "jsonl", cwd=tmp_path)  # fmt: skip
    assert scan.returncode == 0, scan.stderr
    expected = signal_records(candles, mine, mine.params(), symbol="BTCUSDT", timeframe="1m")
    assert [json.loads(line) for line in scan.stdout.splitlines()] == json.loads(
        json.dumps(expected)
    )


def test_an_absolute_import_of_a_sibling_says_how(tmp_path: Path) -> None:
    folder = write_sibling_folder(tmp_path / "abs")
    text = (folder / "mine.py").read_text().replace("from .helpers", "from helpers")
    (folder / "mine.py").write_text(text)
    with pytest.raises(StrategyFolderError, match=r"imported relatively: from \.helpers import"):
        find_strategies([folder])


def test_a_sibling_edit_that_changes_decisions_refuses_the_frozen_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_sibling_folder(tmp_path / "s")
    frozen = write_frozen(
        freeze(strategy=get_strategy("my_cross", [folder]), timeframe="1m", params={}),
        tmp_path / "f.json",
    )
    monkeypatch.setenv("SIGNALS_STRATEGY_PATH", str(folder))
    helpers = folder / "helpers.py"
    helpers.write_text(helpers.read_text() + "\n# a comment: cannot change a decision\n")
    assert load_frozen(frozen).strategy == "my_cross"  # the folder reloaded, same behaviour
    helpers.write_text(HELPERS.replace("LINE", "sma"))  # the strategy's module is unchanged
    with pytest.raises(FrozenFileError, match=r"its behaviour \(not its module\)"):
        load_frozen(frozen)
