"""The demo job: every strategy on every timeframe it declares, summarised in a report."""

from __future__ import annotations

import json
from pathlib import Path

from signals.data.load import load_candles
from signals.data.validate import iso
from signals.scan import signal_records
from strategies import get_strategy, strategy_names


def run_demo(*, db: Path, out: Path, symbol: str = "BTCUSDT", last: int = 5) -> Path:
    """Scan `db` with each strategy's defaults; write ``signals.md`` and ``signals.jsonl``."""
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Demo signals on {db} ({symbol})", ""]
    records_all: list[dict] = []
    for name in strategy_names():
        strategy = get_strategy(name)
        params = strategy.params()
        for timeframe in strategy.timeframes:
            candles = load_candles(db, symbol=symbol, timeframe=timeframe)
            records = signal_records(candles, strategy, params, symbol=symbol, timeframe=timeframe)
            records_all += records
            lines += _section(name, timeframe, candles.index, records, last)
    (out / "signals.jsonl").write_text(
        "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records_all), encoding="utf-8"
    )
    report = out / "signals.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


def _section(name: str, timeframe: str, index: object, records: list[dict], last: int) -> list[str]:
    first, final = index[0], index[-1]  # type: ignore[index]  # index is a DatetimeIndex, typed object
    days = max((final - first).total_seconds() / 86400.0, 1e-9)
    buys = sum(r["signal"] == "BUY" for r in records)
    sells = len(records) - buys
    lines = [
        f"## {name} {timeframe}",
        "",
        f"{len(index)} candles, {first:%Y-%m-%d %H:%M} to {final:%Y-%m-%d %H:%M} UTC: "  # type: ignore[arg-type]  # index is a DatetimeIndex, typed object
        f"{buys} BUY, {sells} SELL ({len(records) / days:.1f} signals a day)",
        "",
        "| candle (UTC) | signal | price | confidence | reasons |",
        "|---|---|---|---|---|",
    ]
    for r in records[-last:]:
        lines.append(
            f"| {iso(r['candle_ts'])} | {r['signal']} | {r['price']:.2f} | "
            f"{r['confidence']:.2f} | {'; '.join(r['reasons'])} |"
        )
    return [*lines, ""]
