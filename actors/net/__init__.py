"""Transport: the streams WebSockets run over, and the URLs they are opened for."""

from actors.net._connect import Connector as Connector
from actors.net._connect import TcpTlsConnector as TcpTlsConnector
from actors.net._connect import default_tls_context as default_tls_context
from actors.net.urls import redact_url as redact_url
from actors.net.urls import split_ws_url as split_ws_url

__all__ = ["Connector", "TcpTlsConnector", "default_tls_context", "redact_url", "split_ws_url"]
