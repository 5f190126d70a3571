"""The example bots run offline (``--demo``) as a user would start them: a symbol is added
at run time, trades and stats are printed, and Ctrl-C stops them cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ["trio_bot.py", "asyncio_bot.py"]


class Lines:
    """The lines a process writes, read as they come."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.lines: list[str] = []
        self._buffer = b""
        self._checked = 0

    async def until(self, text: str) -> str:
        """Read on until a line after those already returned contains ``text``."""
        start = self._checked
        while True:
            for index in range(start, len(self.lines)):
                if text in self.lines[index]:
                    self._checked = index + 1
                    return self.lines[index]
            start = len(self.lines)
            chunk = await self.stream.receive_some()
            assert chunk, f"output ended before {text!r}: {self.lines}"
            *complete, self._buffer = (self._buffer + chunk).split(b"\n")
            self.lines.extend(line.decode() for line in complete)


@pytest.mark.parametrize("example", EXAMPLES)
async def test_example_bot_adds_a_symbol_prints_trades_and_stops_on_ctrl_c(
    example: str, tmp_path: Path
) -> None:
    if not (ROOT / "examples" / example).exists():
        pytest.fail(f"examples/{example} is missing")
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as err:
        process = await trio.lowlevel.open_process(
            [sys.executable, str(ROOT / "examples" / example), "--demo"],
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=tmp_path,
        )
        try:
            assert process.stdout is not None
            out = Lines(process.stdout)
            with trio.fail_after(60):
                await out.until("-- subscribed ETH-USDT on binance")
                await out.until("ETH-USDT")  # a trade of the symbol added at run time
                await out.until(" messages; ")  # a stats line
                process.send_signal(signal.SIGINT)
                await out.until("-- stopped")
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    errors = stderr.read_text()
    assert code == 0, errors
    assert "Traceback" not in errors
    assert "stopping: " in errors  # the supervisor's clean stop, logged
    trades = [line for line in out.lines if line.startswith(("binance ", "okx "))]
    assert {line.split()[0] for line in trades} == {"binance", "okx"}
    assert out.lines[-1] == "-- stopped"
