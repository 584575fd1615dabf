"""Benchmark the live runner: commit-to-receive latency, idle CPU, startup, and the UDS floor.

A writer PROCESS commits closed 1m candles at a fixed rate (default 50/s, 1,000 candles) into a
fresh database while ``signals live`` runs as a subprocess with a frozen ``ema_cross`` (fast=2,
slow=5, so many candles give a signal). A client on the Unix socket receives every signal line;
latency = receive time - the writer's commit time of that candle (CLOCK_MONOTONIC, system-wide).
Idle CPU is the runner's utime+stime from /proc/<pid>/stat over 10 s with nothing written. The
floor is a bare Unix-socket round trip of a signal-sized line to an echo process.

    .venv/bin/python benchmarks/live_latency.py [--candles 1000] [--rate 50] [--write-results]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results import replace_section  # noqa: E402
from research.demo_live import runner_status  # noqa: E402
from signals.data.store import connect_writable, write_candles  # noqa: E402
from signals.frozen import freeze, write_frozen  # noqa: E402
from tests.candles import random_walk  # noqa: E402

HEADING = "## Live runner latency"
HISTORY = 200
PARAMS = {"fast": 2, "slow": 5}
WRITER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import pandas as pd
from signals.data.store import connect_writable, write_candles
candles = pd.read_pickle(sys.argv[3])
rate, start = float(sys.argv[4]), int(sys.argv[5])
conn = connect_writable(sys.argv[2])
commits = {}
t0 = time.monotonic()
for k, i in enumerate(range(start, len(candles))):
    wait = t0 + k / rate - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    write_candles(conn, candles.iloc[i : i + 1], symbol="BTCUSDT", timeframe="1m")
    commits[int(candles.index[i].timestamp())] = time.monotonic()
print(json.dumps(commits))
"""
ECHO = """
import socket, sys
srv = socket.socket(socket.AF_UNIX); srv.bind(sys.argv[1]); srv.listen(1)
print("ready", flush=True)
conn, _ = srv.accept()
f = conn.makefile("rb")
for line in f:
    conn.sendall(line)
"""


def pct(values: list[float], q: float) -> float:
    """Return the q-quantile of `values` (nearest rank)."""
    data = sorted(values)
    return data[min(len(data) - 1, int(q * len(data)))]


def cpu_seconds(pid: int) -> float:
    """Return utime + stime of `pid` in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def uds_floor(tmp: Path, n: int = 2000) -> list[float]:
    """Return round-trip times of a signal-sized line over a Unix socket to an echo process."""
    path = tmp / "echo.sock"
    with subprocess.Popen(
        [sys.executable, "-c", ECHO, str(path)], stdout=subprocess.PIPE, text=True
    ) as echo:
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))
            reader = sock.makefile("rb")
            line = b'{"type":"signal","seq":1,' + b'"x":"' + b"y" * 300 + b'"}\n'
            times = []
            for _ in range(n):
                start = time.perf_counter()
                sock.sendall(line)
                reader.readline()
                times.append(time.perf_counter() - start)
            reader.close()
        echo.wait(timeout=5)
    return times


class Receiver(threading.Thread):
    """Read signal lines; remember when each candle's signal arrived."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        self.hello = json.loads(self.file.readline())
        self.received: dict[int, float] = {}

    def run(self) -> None:
        """Collect until the connection closes."""
        for line in self.file:
            now = time.monotonic()
            message = json.loads(line)
            if message["type"] == "signal":
                self.received[message["candle_ts"]] = now


def step_hot_and_cold(tmp: Path, steps: int = 300) -> dict[str, float]:
    """Return the engine step's p50 (ms) in process: back to back, and after 20 ms of idle."""
    from live.engine import SignalEngine
    from signals.data.store import CandleStore

    candles = random_walk(HISTORY + 2 * steps, seed=12)
    conn = connect_writable(tmp / "steps.db")
    write_candles(conn, candles.iloc[:HISTORY], symbol="BTCUSDT", timeframe="1m")
    engine = SignalEngine(freeze(strategy="ema_cross", timeframe="1m", params=PARAMS))
    out = {}
    with CandleStore(tmp / "steps.db") as store:
        for label, pause, first in (("hot", 0.0, HISTORY), ("cold", 0.02, HISTORY + steps)):
            times = []
            for i in range(first, first + steps):
                write_candles(conn, candles.iloc[i : i + 1], symbol="BTCUSDT", timeframe="1m")
                time.sleep(pause)
                started = time.perf_counter()
                engine.step(store, int(candles.index[i - 1].timestamp()))
                times.append(time.perf_counter() - started)
            out[label] = pct(times[20:], 0.5) * 1e3
    conn.close()
    return out


def run(candles_n: int, rate: float, idle_s: float) -> dict:
    """Run the benchmark; return the figures."""
    tmp = Path(tempfile.mkdtemp(prefix="live-bench-"))
    db, sock, frozen = tmp / "candles.db", tmp / "live.sock", tmp / "ema.json"
    candles = random_walk(HISTORY + candles_n, seed=11)
    candles.to_pickle(tmp / "candles.pkl")
    conn = connect_writable(db)
    write_candles(conn, candles.iloc[:HISTORY], symbol="BTCUSDT", timeframe="1m")
    conn.close()
    write_frozen(freeze(strategy="ema_cross", timeframe="1m", params=PARAMS), frozen)
    log = open(tmp / "live.log", "wb")  # noqa: SIM115
    cmd = [sys.executable, "-m", "signals", "live", "--params", str(frozen), "--db", str(db)]
    started = time.monotonic()
    proc = subprocess.Popen([*cmd, "--socket", str(sock)], cwd=ROOT, stdout=log, stderr=log)
    while True:
        try:
            receiver = Receiver(sock)
            break
        except OSError:
            time.sleep(0.005)
    startup = time.monotonic() - started
    receiver.start()
    time.sleep(1.0)
    writer = subprocess.run(
        [sys.executable, "-c", WRITER, str(ROOT), str(db), str(tmp / "candles.pkl"), str(rate),
         str(HISTORY)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    commits = {int(k): v for k, v in json.loads(writer.stdout).items()}
    time.sleep(1.0)
    status = runner_status(sock)
    latencies = [receiver.received[ts] - commits[ts] for ts in receiver.received if ts in commits]
    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(idle_s)
    idle_cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)
    log.close()
    floor = uds_floor(tmp)
    step = step_hot_and_cold(tmp)
    return {
        "step_hot_ms": step["hot"],
        "step_cold_ms": step["cold"],
        "candles": candles_n,
        "rate": rate,
        "signals": len(latencies),
        "latency_ms": {q: pct(latencies, v) * 1e3 for q, v in (("p50", 0.5), ("p99", 0.99))}
        | {"max": max(latencies) * 1e3},
        "decide_ms": status["decide_ms"],
        "journal_ms": status["journal_ms"],
        "empty_checks": status["empty_checks"],
        "runner_latency_ms": status["latency_ms"],
        "idle_cpu_pct": idle_cpu * 100,
        "idle_s": idle_s,
        "startup_s": startup,
        "floor_us": {"p50": pct(floor, 0.5) * 1e6, "p99": pct(floor, 0.99) * 1e6},
        "load": os.getloadavg(),
        "watch": status["watch_mode"],
    }


def section(r: dict) -> str:
    """Return the RESULTS.md section for `r`."""
    lat, dec, flo, run_ = r["latency_ms"], r["decide_ms"], r["floor_us"], r["runner_latency_ms"]
    row_lat = f"{lat['p50']:.2f} | {lat['p99']:.2f} | {lat['max']:.2f}"
    row_run = f"{run_['p50_ms']} | {run_['p99_ms']} | {run_['max_ms']}"
    row_dec = f"{dec['p50_ms']} | {dec['p99_ms']} | {dec['max_ms']}"
    row_flo = f"{flo['p50']:.1f} | {flo['p99']:.1f} |"
    return f"""{HEADING}

`.venv/bin/python benchmarks/live_latency.py --write-results` ({time.strftime("%Y-%m-%d")},
{os.cpu_count()} cores, load average {r["load"][0]:.2f} at the end: other jobs were running).
A writer process commits {r["candles"]} closed 1m candles at {r["rate"]:g}/s while
`signals live` (watch: {r["watch"]}) runs `ema_cross` fast=2 slow=5; latency is from the
writer's commit to the client reading the signal line, over the {r["signals"]} candles that gave
a signal.

| figure | p50 | p99 | max |
|---|---|---|---|
| commit → client receives the signal line (ms) | {row_lat} |
| runner: notice → sent (its `status` latency_ms) | {row_run} |
| of which: the engine step alone (`decide_ms`, ms) | {row_dec} |
| floor: bare Unix-socket round trip, 300-byte line (µs) | {row_flo} |

- Idle CPU of the runner: {r["idle_cpu_pct"]:.3f} % of a core over {r["idle_s"]:g} s (target < 1 %).
- Listening {r["startup_s"]:.2f} s after the process started (Python + pandas + strategies).
- Target p99 < 5 ms: {"met" if lat["p99"] < 5 else "NOT met"} in this run. The commit is noticed
  within ~0.2 ms (inotify); the rest is the engine step (read the new candle, validate it, append
  it to the in-memory window, call the strategy's signal function on the window: the same call
  as `signals scan`), the journal write and two thread hand-offs.
- The step is mostly Python and pandas overhead, and it costs more on a CPU that has been idle
  (cold caches, a halted vCPU waking up): in process, back to back it takes
  {r["step_hot_ms"]:.2f} ms (p50), after 20 ms of idle {r["step_cold_ms"]:.2f} ms. A real 1m feed
  (one candle a minute) always meets the cold case.
"""


def write_results(text: str) -> None:
    """Replace the live section of benchmarks/RESULTS.md (re-read right before)."""
    replace_section(HEADING, text)


def main() -> None:
    """Parse arguments, run, print (and optionally record) the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candles", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU sampling")
    parser.add_argument("--write-results", action="store_true", help="update RESULTS.md")
    args = parser.parse_args()
    result = run(args.candles, args.rate, args.idle)
    print(json.dumps(result, indent=2))
    text = section(result)
    print(text)
    if args.write_results:
        write_results(text)


if __name__ == "__main__":
    main()
