"""Transport: the streams WebSockets run over, the routes and TLS they are opened with,
and the URLs they are opened for."""

from actors.net._connect import Connector as Connector
from actors.net._connect import TcpTlsConnector as TcpTlsConnector
from actors.net._connect import default_tls_context as default_tls_context
from actors.net._connect import is_local_host as is_local_host
from actors.net.route import ProxyURL as ProxyURL
from actors.net.route import Route as Route
from actors.net.route import resolve_route as resolve_route
from actors.net.tls import TlsSettings as TlsSettings
from actors.net.tls import build_ssl_context as build_ssl_context
from actors.net.tunnel import open_stream as open_stream
from actors.net.urls import redact_url as redact_url
from actors.net.urls import split_ws_url as split_ws_url

__all__ = [
    "Connector",
    "ProxyURL",
    "Route",
    "TcpTlsConnector",
    "TlsSettings",
    "build_ssl_context",
    "default_tls_context",
    "is_local_host",
    "open_stream",
    "redact_url",
    "resolve_route",
    "split_ws_url",
]
