"""Instructions per message on the receive path, counted by valgrind's callgrind.

CPU times on a shared or virtualized machine vary by 10-25 % between runs; instruction
counts do not depend on what else the machine does. This counts, for one or more Python
environments (each with a commit of this project installed):

- ``ours_messages``: one ``bench/receive_path.py _client ours_messages`` process against a
  ``_serve`` process, at N = 1,000 and N = 5,000 messages; per message =
  (Ir(5000) - Ir(1000)) / 4000, so start-up and connect cancel out. Under valgrind the
  client runs about 50 times slower, so time-driven work (the 0.25 s stats flush) happens
  once per fewer messages than at full speed: compare environments, not absolute values.
- ``adapter``: the Binance adapter's ``receive_frame`` over 20,000 trade frames, minus the
  same process without the calls.

Usage::

    python bench/instructions.py .venv/bin/python /tmp/mp-before/.venv/bin/python

Needs ``valgrind`` (Debian package ``valgrind``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECEIVE_PATH = HERE / "receive_path.py"
SMALL, LARGE, FRAMES = 1_000, 5_000, 20_000

_ADAPTER = """
import os, sys
sys.argv = [sys.argv[0]]
sys.path.insert(0, {bench!r})
import receive_path as rp
frames = [rp.trade_frame(i).decode() for i in range({n})]
proto = rp.live_adapter()
if os.environ["CALLS"] == "1":
    receive = proto.receive_frame
    for frame in frames:
        receive(frame, 0.0, 0.0)
"""


def _instructions(command: list[str], env: dict[str, str] | None = None) -> int:
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        capture_output=True,
        text=True,
        # Not the checkout: `python -c` puts the working directory first on sys.path,
        # which would measure the checkout's code under every environment.
        cwd="/",
        # A fixed hash seed: dict and set layouts (and so instruction counts) repeat.
        env={**os.environ, "PYTHONHASHSEED": "0", **(env or {})},
        check=True,
    )
    for line in done.stderr.splitlines():
        if "Collected" in line:
            return int(line.split()[-1])
    raise RuntimeError(f"no instruction count from callgrind:\n{done.stderr}")


def per_message(python: str) -> float:
    """Instructions per message of ``sup.messages()`` in ``python``'s environment."""
    counts = []
    for n in (SMALL, LARGE):
        server = subprocess.Popen(
            [sys.executable, str(RECEIVE_PATH), "_serve", "--n", str(n)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            port = server.stdout.readline().strip()
            client = [str(RECEIVE_PATH), "_client", "ours_messages", "--port", port]
            counts.append(_instructions([python, *client, "--n", str(n)]))
        finally:
            server.kill()
            server.wait()
    return (counts[1] - counts[0]) / (LARGE - SMALL)


def per_frame(python: str) -> float:
    """Instructions per frame of the Binance adapter alone."""
    script = _ADAPTER.format(bench=str(HERE), n=FRAMES)
    without = _instructions([python, "-c", script], {"CALLS": "0"})
    with_calls = _instructions([python, "-c", script], {"CALLS": "1"})
    return (with_calls - without) / FRAMES


def main(pythons: list[str]) -> None:
    print("| environment | instructions per message (`sup.messages()`) | per adapter frame |")
    print("| --- | ---: | ---: |")
    for python in pythons:
        # The measurements run from / (see _instructions): a relative interpreter path
        # such as .venv/bin/python is made absolute first (abspath, not realpath: a
        # venv's python must stay the venv's symlink).
        runnable = os.path.abspath(python) if os.sep in python else python
        print(f"| `{python}` | {per_message(runnable):,.0f} | {per_frame(runnable):,.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:] or [sys.executable])
