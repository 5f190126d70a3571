"""Ctrl-C in an ``asyncio.run`` program that runs ``supervisor.aio.open_supervisor``.

The program runs in a subprocess against a fake exchange of this test's Trio run (over
loopback TCP). It prints ``ready`` once a message arrived; the test then sends SIGINT.
What is promised (see the module docstring of ``supervisor.aio``): asyncio's SIGINT
handler cancels the main task, the body sees the cancellation, the supervisor closes its
connection cleanly (close code 1000) and the Trio run ends before the ``async with`` is
left, then ``asyncio.run`` raises ``KeyboardInterrupt``: uncaught, the process prints
asyncio's usual traceback (the cancelled await, then ``KeyboardInterrupt``) and ends by
SIGINT (status 130 in a shell, -2 here). The same on a uvloop loop
(``asyncio.Runner(loop_factory=uvloop.new_event_loop)``).
"""

from __future__ import annotations

import importlib.util
import signal
import sys

import pytest
import trio

from supervisor.testing import open_fake_exchange

PROGRAM = """
import asyncio, logging, sys
from supervisor import config_from_dict
from supervisor.aio import open_supervisor

logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
config = config_from_dict(
    {
        "supervisor": {"shutdown_timeout": 5.0},
        "connections": {"a": {"exchange": "raw", "url": sys.argv[1], "subscribe": ["{}"]}},
    },
    source="<program>",
)

async def main() -> None:
    async with open_supervisor(config) as sup:
        await anext(sup.messages())
        print("ready", flush=True)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            print("body cancelled", flush=True)
            raise

if sys.argv[2] == "uvloop":
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
else:
    asyncio.run(main())
"""


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data


@pytest.mark.parametrize(
    "loop",
    [
        "asyncio",
        pytest.param(
            "uvloop",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("uvloop") is None,
                reason="uvloop is not installed (pip install uvloop)",
            ),
        ),
    ],
)
async def test_ctrl_c_stops_the_supervisor_cleanly_and_exits_by_sigint(loop: str) -> None:
    async with open_fake_exchange(name="a", interval=0.05) as fake:
        with trio.fail_after(30):
            process = await trio.lowlevel.open_process(
                [sys.executable, "-c", PROGRAM, fake.url, loop],
                stdout=-1,  # subprocess.PIPE
                stderr=-1,
            )
            assert process.stdout is not None and process.stderr is not None
            out = b""
            while b"\n" not in out:
                chunk = await process.stdout.receive_some()
                assert chunk, "the program ended before it was ready"
                out += chunk
            assert out == b"ready\n"
            process.send_signal(signal.SIGINT)
            out += await read_all(process.stdout)
            err = (await read_all(process.stderr)).decode()
            code = await process.wait()
            await fake.wait_until(lambda f: not f.sessions[0].open)
    assert code == -signal.SIGINT, err
    assert out == b"ready\nbody cancelled\n"
    assert fake.sessions[0].close_code == 1000
    lines = err.splitlines()
    logs = [line for line in lines if line.startswith("marketprism.")]
    assert logs[-1] == "marketprism.supervisor INFO stopping: stop requested", err
    # asyncio.run's own traceback: the cancelled await, then KeyboardInterrupt; nothing
    # of Trio's, no task destroyed or exception ignored.
    assert lines[-1] == "KeyboardInterrupt", err
    assert "asyncio.exceptions.CancelledError" in lines
    assert "During handling of the above exception, another exception occurred:" in lines
    assert "/trio/" not in err
    assert "Task was destroyed" not in err and "Exception ignored" not in err
