"""``marketprism demo`` with REST: offline, every connection shows a clock offset from its
venue's REST fake, and messages are still delivered."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-c", "import sys; from supervisor.cli import main; sys.exit(main())"]
ENV = {
    key: value
    for key, value in os.environ.items()
    if key not in {"COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE"}
}
TITLE = re.compile(r"marketprism demo: (\d+) messages delivered \(stopped\)")


def test_demo_shows_messages_delivered_and_a_clock_offset_per_venue(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "demo", "--duration", "3", "--fault-every", "10", "--seed", "3"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    final = done.stdout[done.stdout.rindex("marketprism demo: ") :]
    title = TITLE.search(final)
    assert title is not None and int(title[1]) > 0, final
    header = next(line for line in final.splitlines() if "connection" in line)
    columns = [cell.strip() for cell in header.strip().split("┃")[1:-1]]
    at = columns.index("clock ms")
    rows = [
        [cell.strip() for cell in line.strip().split("│")[1:-1]]
        for line in final.splitlines()
        if line.strip().startswith("│")
    ]
    assert [row[0] for row in rows] == ["binance", "okx", "deribit", "bybit"], final
    # Each venue's REST fake answered its server time: a signed offset in milliseconds.
    assert all(re.fullmatch(r"[+-]\d+", row[at]) for row in rows), final
    # The REST calls worked: no REST failure was logged.
    assert "REST" not in done.stderr, done.stderr
