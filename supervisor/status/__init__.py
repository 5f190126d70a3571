"""The status endpoint: a running supervisor's stats over HTTP (JSON, Prometheus, probes).

::

    async with open_supervisor(config) as sup, trio.open_nursery() as nursery:
        await nursery.start(serve_status, sup, "127.0.0.1", 9464)
        ...

``marketprism run|demo --status 127.0.0.1:9464`` does the same.
"""

from supervisor.status._metrics import SnapshotCollector as SnapshotCollector
from supervisor.status._metrics import render_metrics as render_metrics
from supervisor.status._server import StatusAddressInUse as StatusAddressInUse
from supervisor.status._server import bind_status as bind_status
from supervisor.status._server import serve_status as serve_status
from supervisor.status._server import serve_status_listener as serve_status_listener
from supervisor.status._server import status_document as status_document

__all__ = [
    "SnapshotCollector",
    "StatusAddressInUse",
    "bind_status",
    "render_metrics",
    "serve_status",
    "serve_status_listener",
    "status_document",
]
