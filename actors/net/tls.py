"""TLS for a connection: the settings, the client context, and the handshake's errors.

Theory of operation: a connection's ``[connections.NAME.tls]`` table decodes to
:class:`TlsSettings`. :func:`build_ssl_context` turns settings into a client
:class:`ssl.SSLContext` once per distinct settings (contexts are cached: loading
certifi's bundle costs milliseconds, and the context is never changed after it is built),
verified by default against certifi's roots plus ``ca_file``. :func:`start_tls` runs the
handshake over any stream, direct or tunnelled through proxies, so one code path sets SNI
and verifies the certificate whatever the route; a certificate that fails verification
becomes a :class:`~actors._errors.ConnectError` that says why (untrusted issuer, wrong
host, expired) and where (the host, and the proxy route if any), with the
:class:`ssl.SSLCertVerificationError` chained (the supervisor classifies by it).

``verify = false`` is honoured only because a connection asked for it; the warning at
every connect is the connector's (it knows the connection's name).
"""

from __future__ import annotations

import functools
import ssl
from typing import Final

import certifi
import trio

from actors._errors import ConnectError
from actors._spec import TlsSettings

__all__ = [
    "TlsSettings",
    "build_ssl_context",
    "describe_verification",
    "proxy_ssl_context",
    "start_tls",
]

#: OpenSSL ``X509_V_ERR_*`` codes (openssl/x509_vfy.h) -> what they mean to an operator.
_VERIFY_REASONS: Final = {
    2: "untrusted issuer",  # UNABLE_TO_GET_ISSUER_CERT
    9: "not yet valid",  # CERT_NOT_YET_VALID
    10: "expired",  # CERT_HAS_EXPIRED
    18: "untrusted issuer (self-signed)",  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: "untrusted issuer (self-signed root in the chain)",  # SELF_SIGNED_CERT_IN_CHAIN
    20: "untrusted issuer",  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: "untrusted issuer",  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
    23: "revoked",  # CERT_REVOKED
    62: "wrong host",  # HOSTNAME_MISMATCH
    64: "wrong host",  # IP_ADDRESS_MISMATCH
}


#: The settings of a connection without a ``tls`` table.
DEFAULT_TLS: Final = TlsSettings()


def build_ssl_context(settings: TlsSettings | None) -> ssl.SSLContext:
    """The client TLS context for ``settings``, built once per distinct settings.

    Verified contexts trust certifi's roots plus ``ca_file`` and check the host name;
    ``verify = false`` gives one that checks neither. Files are read when the context
    is first built (a changed file is read again only by a new process).

    Args:
        settings: the connection's settings; ``None`` means the defaults.

    Returns:
        A context shared by every caller with equal settings; never modify it.

    Raises:
        OSError: a file cannot be read.
        ssl.SSLError: a file is not a PEM certificate or key.
    """
    return _build(settings or DEFAULT_TLS)


def proxy_ssl_context(settings: TlsSettings | None) -> ssl.SSLContext:
    """The context that verifies ``https://`` proxy hops of a connection with ``settings``.

    certifi's roots plus the connection's ``ca_file`` (a private CA often issues the
    proxy's certificate and the gateway's alike); no client certificate; always
    verified: ``verify = false`` concerns the exchange's certificate, never a proxy's.
    """
    ca_file = settings.ca_file if settings is not None else None
    return _build(TlsSettings(ca_file=ca_file))


@functools.lru_cache(maxsize=64)
def _build(settings: TlsSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certifi.where())
    if settings.ca_file is not None:
        context.load_verify_locations(cafile=settings.ca_file)
    if settings.cert_file is not None:
        context.load_cert_chain(settings.cert_file, settings.key_file)
    if not settings.verify:  # only [connections.NAME.tls] verify = false, warned per connect
        context.check_hostname = False  # insecure-opt-in
        context.verify_mode = ssl.CERT_NONE  # insecure-opt-in
    return context


def describe_verification(exc: ssl.SSLCertVerificationError) -> str:
    """Why a certificate was refused, for an operator: ``expired (certificate has
    expired, verify code 10)``."""
    code = exc.verify_code
    why = _VERIFY_REASONS.get(code, "refused")
    detail = exc.verify_message or exc.reason or str(exc)
    return f"{why} ({detail}, verify code {code})"


async def start_tls(
    stream: trio.abc.Stream,
    context: ssl.SSLContext,
    *,
    server_hostname: str,
    where: str,
) -> trio.SSLStream[trio.abc.Stream]:
    """Run the client TLS handshake over ``stream``.

    Args:
        stream: a connected stream (TCP, or a tunnel through proxies); owned by the
            result on success, closed on failure.
        context: from :func:`build_ssl_context`.
        server_hostname: sent as SNI and checked against the certificate.
        where: the destination as shown in errors, with the route if proxied
            (``wss://host/ws via socks5://user:***@proxy:1080``); no secrets.

    Returns:
        The TLS stream, handshake completed.

    Raises:
        ConnectError: the handshake failed; for a refused certificate the message
            says why and the :class:`ssl.SSLCertVerificationError` is chained.

    Cancellation: ``stream`` is closed on the way out.
    """
    tls = trio.SSLStream(stream, context, server_hostname=server_hostname)
    try:
        await tls.do_handshake()
    except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
        await trio.aclose_forcefully(stream)
        cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise ConnectError(
                f"TLS certificate of {where} refused: {describe_verification(cause)}"
            ) from cause
        raise ConnectError(f"TLS handshake with {where} failed: {cause or exc}") from exc
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return tls
