"""Keep benchmarks/RESULTS.md as sections, one per benchmark script, each replaced in place."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
TITLE = "# Benchmark results\n"


def replace_section(heading: str, text: str, path: Path = RESULTS) -> None:
    """Replace the section starting with `heading` (a ``## ...`` line) by `text`, or append it.

    The file is re-read right before writing, so scripts run one after another keep each
    other's sections.
    """
    current = path.read_text(encoding="utf-8") if path.exists() else TITLE
    if heading in current:
        head, _, rest = current.partition(heading)
        tail = rest.split("\n## ", 1)
        after = "\n## " + tail[1] if len(tail) > 1 else ""
        current = head.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n" + after
    else:
        current = current.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    path.write_text(current, encoding="utf-8")


def machine() -> str:
    """Return a one-line description: CPU model, cores, memory, OS."""
    model = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} {platform.release()}"
    )


def load_average() -> float:
    """Return the 1-minute load average (other jobs running skew the figures)."""
    return os.getloadavg()[0]
