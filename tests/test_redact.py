"""The one set of masking rules (actors/redact.py): URLs, frames, free text, reprs.

Audit M7: ``sig=``, ``X-Amz-Credential=``, ``jwt=``, ``pwd=``, listenKey paths, the user
part of user-info and raw login frames leaked. Each rule is pinned with exact output.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
import trio
from conformance.venues import VENUES
from exchanges.helpers import connection_spec
from hypothesis import given
from hypothesis import strategies as st

from actors import ConsumerQueue, Overflow
from actors.exchanges import ADAPTERS, MalformedFrame, RawProtocol
from actors.exchanges.raw import topic_name
from actors.exchanges.sdk.subscriptions import SubscriptionBook
from actors.net import redact_url as redact_url_from_net
from actors.net.urls import redact_url as redact_url_from_urls
from actors.redact import (
    MASK,
    SAFE_QUERY_PARAMS,
    is_secret_key,
    looks_like_token,
    redact_frame,
    redact_text,
    redact_url,
    redact_value,
    redacted_repr,
    userinfo,
)
from actors.registry import RegistryClient, RegistryEvent
from actors.session import TrafficCounter
from supervisor import config_from_dict

LISTEN_KEY = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"


def test_one_function_is_importable_from_its_old_places() -> None:
    assert redact_url_from_net is redact_url
    assert redact_url_from_urls is redact_url


# -- URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("wss://stream.example.com/ws", "wss://stream.example.com/ws"),
        ("wss://alice:hunter2@stream.example.com:9443/ws", "wss://***@stream.example.com:9443/ws"),
        ("wss://SECRETTOKEN@stream.example.com/ws", "wss://***@stream.example.com/ws"),
        (
            "wss://h.example/ws?apiKey=abc&streams=btcusdt@trade&signature=s1",
            "wss://h.example/ws?apiKey=***&streams=btcusdt@trade&signature=***",
        ),
        ("wss://h.example/stream?streams=a/b", "wss://h.example/stream?streams=a/b"),
        # Audit M7 (2): every credential-looking parameter, and the path token.
        (
            "wss://h/ws?apiKey=AAA&sig=BBB&X-Amz-Credential=CCC&jwt=DDD&access_token=EEE&pwd=FFF",
            "wss://h/ws?apiKey=***&sig=***&X-Amz-Credential=***&jwt=***&access_token=***&pwd=***",
        ),
        ("wss://h/ws/LISTENKEY0123456789abcdef", "wss://h/ws/***"),
        (f"wss://fstream.binance.com/ws/{LISTEN_KEY}", "wss://fstream.binance.com/ws/***"),
        (f"wss://h/private/{LISTEN_KEY}/x?listenKey=k", "wss://h/private/***/x?listenKey=***"),
    ],
)
def test_redact_url_masks_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # Allow-listed parameters show their values (names compared case-insensitively,
        # percent-decoded); every other value is masked, however harmless it looks.
        (
            "wss://s.example/stream?streams=btcusdt@trade/ethusdt@depth@100ms&timeUnit=MICROSECOND",
            "wss://s.example/stream?streams=btcusdt@trade/ethusdt@depth@100ms&timeUnit=MICROSECOND",
        ),
        (
            "https://api.example/api/v3/depth?symbol=BTCUSDT&limit=5000",
            "https://api.example/api/v3/depth?symbol=BTCUSDT&limit=5000",
        ),
        (
            "https://o.example/api/v5/market/books?instId=BTC-USDT&sz=400",
            "https://o.example/api/v5/market/books?instId=BTC-USDT&sz=400",
        ),
        (
            "https://d.example/x?INSTRUMENT_NAME=BTC-PERPETUAL",
            "https://d.example/x?INSTRUMENT_NAME=BTC-PERPETUAL",
        ),
        ("https://d.example/x?inst%49d=BTC-USDT", "https://d.example/x?inst%49d=BTC-USDT"),
        ("wss://h.example/ws?a=b&x=1", "wss://h.example/ws?a=***&x=***"),
        # Empty values stay empty; a bare parameter is masked whole unless it is safe.
        ("wss://h.example/ws?a=&streams", "wss://h.example/ws?a=&streams"),
        ("wss://h.example/ws?LISTENKEY&symbol=X", "wss://h.example/ws?***&symbol=X"),
        ("wss://h.example/ws?&&", "wss://h.example/ws?&&"),
        # The fragment follows the query's rules (an OAuth implicit-flow token).
        (
            "wss://h.example/ws#access_token=T&state=S",
            "wss://h.example/ws#access_token=***&state=***",
        ),
    ],
)
def test_redact_url_shows_only_allow_listed_query_values(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_allow_list_names_only_market_data() -> None:
    assert not any(is_secret_key(name) for name in SAFE_QUERY_PARAMS)


@pytest.mark.parametrize("exchange", sorted(VENUES))
def test_every_adapter_url_is_shown_unchanged(exchange: str) -> None:
    """Nothing in the URLs our adapters open looks like a secret to the rules."""
    venue = VENUES[exchange]()
    spec = connection_spec("c", exchange, **venue.spec)
    url = ADAPTERS[exchange](spec).url
    default = ADAPTERS[exchange].default_url
    assert redact_url(url) == url
    assert default is None or redact_url(default) == default


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # keep_username is for proxy hops: the user name names the account, the
        # password is masked; a bare token is masked whole.
        ("socks5://acct-42:hunter2@proxy.example:1080", "socks5://acct-42:***@proxy.example:1080"),
        ("http://token123@proxy.example:3128", "http://***@proxy.example:3128"),
        ("ftp://alice:pw@example.com", "ftp://alice:***@example.com"),
        ("wss://h.example/ws?token=t&a=b", "wss://h.example/ws?token=***&a=***"),
        ("wss://h.example/ws", "wss://h.example/ws"),
    ],
)
def test_redact_url_can_keep_a_proxy_username(url: str, shown: str) -> None:
    assert redact_url(url, keep_username=True) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # Malformed URLs (urlsplit raises for these) are still redacted, never raised on.
        ("http://alice:hunter2@[::1", "http://***@[::1"),
        ("wss://alice:hunter2@h.example:99999/ws", "wss://***@h.example:99999/ws"),
        # No scheme: the whole text before the path is the authority.
        ("alice:hunter2@h.example/ws", "***@h.example/ws"),
        # An empty query stays; a bare fragment is masked like a bare parameter.
        ("wss://u:p@h.example/ws?#k", "wss://***@h.example/ws?#***"),
        ("wss://h.example/ws?key=1#token=2", "wss://h.example/ws?key=***#token=***"),
        # Only the last '@' of the authority ends the user-info; '@' in the path is data.
        ("wss://a@b:c@h.example/x@y", "wss://***@h.example/x@y"),
        ("", ""),
        ("not a url", "not a url"),
    ],
)
def test_redact_url_never_parses_strictly(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "info"),
    [
        ("wss://alice:pw@h/ws", "alice:pw"),
        ("wss://tok@h/ws?x=@", "tok"),
        ("wss://a@b:c@h/x@y", "a@b:c"),
        ("wss://h/x@y", None),
        ("wss://@h/", ""),
        ("http://alice:pw@[::1", "alice:pw"),
    ],
)
def test_userinfo_is_read_the_way_redact_url_reads_it(url: str, info: str | None) -> None:
    assert userinfo(url) == info


@pytest.mark.parametrize(
    ("segment", "token"),
    [
        (LISTEN_KEY, True),
        ("LISTENKEY0123456789abcdef", True),
        ("da39a3ee5e6b4b0d3255bfef95601890afd80709", True),  # a hex digest
        ("550e8400-e29b-41d4-a716-446655440000", True),  # a UUID
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", True),  # a JWT
        ("ABCDEFGHIJKLMNO1", True),  # 16 characters, two classes: the shortest token
        ("ABCDEFGHIJKLMN1", False),  # 15 characters
        ("marketdatastream", False),  # one class only
        ("12345678901234567890", False),  # digits only: an id, not a credential
        ("btcusdt@aggTrade", False),  # '@' never appears in tokens
        ("btcusdt@depth20@100ms", False),
        ("v5", False),
        ("a/b" * 8, False),
    ],
)
def test_looks_like_token(segment: str, token: bool) -> None:
    assert looks_like_token(segment) is token


@given(st.text(max_size=80))
def test_redact_url_never_raises_and_is_idempotent(url: str) -> None:
    once = redact_url(url)
    assert redact_url(once) == once
    assert redact_url(once, keep_username=True) == once


@given(st.text(alphabet="ab:@/?#&=.%-_XY0123456789", max_size=60))
def test_redact_url_is_idempotent_on_url_shaped_text(url: str) -> None:
    for keep in (False, True):
        once = redact_url(url, keep_username=keep)
        assert redact_url(once, keep_username=keep) == once


# -- frames ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "shown"),
    [
        # Login frames keep only the fields that name the operation.
        (
            '{"op":"login","args":[{"apiKey":"AK-123","passphrase":"hunter2",'
            '"timestamp":"1538054050","sign":"c2lnbmF0dXJl"}]}',
            '{"op":"login","args":"***"}',
        ),
        (
            '{"id":"4885f793","method":"session.logon","params":{"apiKey":"K",'
            '"signature":"S","timestamp":1649729878532}}',
            '{"id":"***","method":"session.logon","params":"***"}',
        ),
        (
            '{"req_id":"10001","op":"auth","args":["api_key",1662350400000,"signature"]}',
            '{"req_id":"***","op":"auth","args":"***"}',
        ),
        (
            '{"jsonrpc":"2.0","id":9929,"method":"public/auth","params":{"grant_type":'
            '"client_credentials","client_id":"CID","client_secret":"CS"}}',
            '{"jsonrpc":"***","id":"***","method":"public/auth","params":"***"}',
        ),
        # Other frames: values under secret-looking keys, at any depth.
        (
            '{"method":"subscribe","params":{"channel":"executions","token":"TOK"}}',
            '{"method":"subscribe","params":{"channel":"executions","token":"***"}}',
        ),
        (
            '{"type":"subscribe","product_ids":["BTC-USD"],"signature":"S","key":"K",'
            '"passphrase":"P","timestamp":"1"}',
            '{"type":"subscribe","product_ids":["BTC-USD"],"signature":"***","key":"***",'
            '"passphrase":"***","timestamp":"1"}',
        ),
        ('{"x":{"api_key":{"nested":1}}}', '{"x":{"api_key":"***"}}'),
        ('[{"Password":123}]', '[{"Password":"***"}]'),
        # URLs inside frames follow the URL rules.
        ('{"op":"x","url":"wss://u:p@h/?token=T"}', '{"op":"x","url":"wss://***@h/?token=***"}'),
        # Ordinary subscribe frames are shown as they are (compact JSON).
        (
            '{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}',
            '{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}',
        ),
        (
            '{"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}',
            '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}',
        ),
        # Not JSON: free-text rules.
        ("hello", "hello"),
        ("auth apiKey=AK-1 sign=S", "auth apiKey=*** sign=***"),
        ('{"apiKey":"AK-1", broken', '{"apiKey":"***", broken'),
        ("42", "42"),
    ],
)
def test_redact_frame(frame: str, shown: str) -> None:
    assert redact_frame(frame) == shown
    assert redact_frame(frame.encode()) == shown
    assert redact_frame(shown) == shown


def test_redact_frame_survives_what_json_cannot_hold() -> None:
    assert redact_frame(b"\xff apiKey=X") == "\ufffd apiKey=***"
    deep = "[" * 5000 + '{"token":"T"}' + "]" * 5000
    assert "T" not in redact_frame(deep).replace("token", "")
    assert redact_frame("{" * 3) == "{" * 3


# -- free text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "cannot connect to wss://u:p@h/ws?token=T: refused",
            "cannot connect to wss://***@h/ws?token=***: refused",
        ),
        ("{'apiKey': 'AK', 'streams': 'x'}", "{'apiKey': '***', 'streams': 'x'}"),
        ('"passphrase" : "p w"', '"passphrase" : "***"'),
        # A repr cut short is masked to its end.
        ('\'{"op":"login","args":[{"apiKey":"AK-12...', '\'{"op":"login","args":[{"apiKey":"***'),
        ("token=abc&x=1", "token=***&x=1"),
        ("Authorization: Bearer abcdefgh123 ok", "Authorization: *** *** ok"),
        ("X-MBX-APIKEY: vmPUZE6mv9SD5VNHk4HlWFsO", "X-MBX-APIKEY: ***"),
        ('"auth": {"key": "x"}', '"auth": {"key": "***"}'),
        # Nothing secret: unchanged.
        (
            "connections.a.url: 'wss://h/ws' has stale_after=30",
            "connections.a.url: 'wss://h/ws' has stale_after=30",
        ),
        ("Basic checks", "Basic checks"),
    ],
)
def test_redact_text(text: str, shown: str) -> None:
    assert redact_text(text) == shown
    assert redact_text(shown) == shown


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("apiKey", True),
        ("api_key", True),
        ("X-Api-Key", True),
        ("client_secret", True),
        ("client_id", True),
        ("passphrase", True),
        ("pwd", True),
        ("sign", True),
        ("jwt", True),
        ("access_token", True),
        ("listenKey", True),
        ("instId", False),
        ("channel", False),
        ("timestamp", False),
        ("op", False),
    ],
)
def test_is_secret_key(name: str, secret: bool) -> None:
    assert is_secret_key(name) is secret


# -- values and reprs --------------------------------------------------------------------


def test_redact_value_keeps_the_shape() -> None:
    value: Any = {
        "url": "wss://u:p@h/?token=T",
        "token": 5,
        "frames": ('{"op":"login","args":[]}', ["x"]),
        "n": 1.5,
    }
    assert redact_value(value) == {
        "url": "wss://***@h/?token=***",
        "token": MASK,
        "frames": ('{"op":"login","args":"***"}', ["x"]),
        "n": 1.5,
    }


SECRET_CONFIG: dict[str, Any] = {
    "connections": {
        "x": {
            "exchange": "raw",
            "url": f"wss://h.example/ws/{LISTEN_KEY}?token=SECRET-TOKEN&streams=a",
            "subscribe": [
                '{"op":"login","args":[{"apiKey":"AK-123","passphrase":"hunter2","sign":"c2ln"}]}',
                '{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}',
            ],
        }
    }
}


def test_config_reprs_mask_proxy_passwords() -> None:
    config = config_from_dict(
        {
            "defaults": {"proxy": "http://dad:DEFAULT-PW@d.example:3128"},
            "connections": {
                "x": {
                    "exchange": "binance",
                    "symbols": ["BTCUSDT"],
                    "channels": ["trades"],
                    "proxy": ["socks5://son:CHAIN-PW@p.example:1080", "http://q.example:3128"],
                }
            },
        }
    )
    shown = repr(config)
    assert "default_proxy='http://***@d.example:3128'" in shown
    assert "proxy=('socks5://***@p.example:1080', 'http://q.example:3128')" in shown
    assert "PW" not in shown and "PW" not in str(dict(config.__rich_repr__()))


def test_config_reprs_mask_urls_and_frames() -> None:
    config = config_from_dict(SECRET_CONFIG)
    conn = config.connections[0]
    shown = (
        "ConnectionConfig(name='x', exchange='raw', "
        "url='wss://h.example/ws/***?token=***&streams=a', "
        'channels=(), symbols=(), subscribe=(\'{"op":"login","args":"***"}\', '
        '\'{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}\'), '
        "raw=(), heartbeat=None, stale_after=30.0, silent_after=None, connect_timeout=10.0, "
        "overflow=<Overflow.BLOCK: 'block'>, buffer=1024, buffer_bytes=67108864, "
        "max_message_size=4194304, proxy=None, tls=TlsSettings(ca_file=None, cert_file=None, "
        "key_file=None, verify=True, server_hostname=None), allow_plaintext=False, "
        "book_sync=True, book_depth=1000, book_refresh=600.0, book_top=None, "
        "book_interval=0.0, transport=<Transport.FAST: 'fast'>, "
        "restart=<RestartType.PERMANENT: 'permanent'>, "
        "backoff=BackoffPolicy(initial=0.5, max=30.0, multiplier=2.0, "
        "jitter=<Jitter.FULL: 'full'>, reset_after=60.0), "
        "rest=RestSettings(base_url=None, venue=None, connect_timeout=10.0, "
        "read_timeout=10.0, total_timeout=30.0, attempts=4), give_up_after=None)"
    )
    assert repr(conn) == str(conn) == shown
    assert repr(config) == (
        f"Config(supervisor={config.supervisor!r}, connections=({shown},), "
        "default_proxy=None, source='<dict>', defaults={})"
    )
    rich = dict(conn.__rich_repr__())
    assert rich["url"] == "wss://h.example/ws/***?token=***&streams=a"
    assert rich["subscribe"][0] == '{"op":"login","args":"***"}'
    # The values themselves are untouched: only their display is masked.
    assert conn.url == SECRET_CONFIG["connections"]["x"]["url"]


def test_a_repr_with_nothing_to_mask_is_msgspecs_own() -> None:
    spec = connection_spec("c", "okx", channels=["trades"], symbols=["BTC-USDT"])
    assert repr(spec) == redacted_repr(spec) == msgspec.Struct.__repr__(spec)


# -- the raw adapter's topics ------------------------------------------------------------


def test_raw_topics_are_named_by_place_and_redacted_summary() -> None:
    login, books = SECRET_CONFIG["connections"]["x"]["subscribe"]
    long = '{"op":"subscribe","args":[' + ",".join(f'"t{i:03d}"' for i in range(30)) + "]}"
    spec = connection_spec(
        "r", "raw", url="wss://h.example/ws", subscribe=[login, books, long, books]
    )
    proto = RawProtocol(spec)
    proto.start_session(0.0)
    assert proto.subscriptions == {
        'subscribe[0] {"op":"login","args":"***"}': "live",
        'subscribe[1] {"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}': "live",
        'subscribe[2] {"op":"subscribe","args":["t000","t001","t002","t003","t004","t005",'
        '"t006","t...': "live",
        'subscribe[3] {"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}': "live",
    }
    # The wire still gets every frame exactly as configured, in order.
    assert proto.frames_to_send() == [login, books, long, books]
    assert topic_name(2, long) == list(proto.subscriptions)[2]


# -- text the exchange sends back -------------------------------------------------------


ECHOED = 'refused {"op":"login","args":[{"apiKey":"AK-ECHO","sign":"SIG-ECHO"}]} token=TOK-ECHO'


def test_a_refusal_message_is_redacted_in_the_topic_state() -> None:
    book = SubscriptionBook()
    book.expect(["login"])
    book.refuse("login", "60009", ECHOED)
    state = book.states["login"]
    assert state.startswith("failed: 60009 refused ")
    for secret in ("AK-ECHO", "SIG-ECHO", "TOK-ECHO"):
        assert secret not in state


async def test_a_malformed_frame_sample_is_logged_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    send, _receive = trio.open_memory_channel[RegistryEvent](10)
    counter = TrafficCounter("x", RegistryClient(send), ConsumerQueue(Overflow.BLOCK, 1))
    with caplog.at_level(logging.WARNING, logger="marketprism"):
        counter.count_malformed(MalformedFrame(kind="json", detail=ECHOED, sample=ECHOED))
    assert "dropped a malformed frame" in caplog.text
    for secret in ("AK-ECHO", "SIG-ECHO", "TOK-ECHO"):
        assert secret not in caplog.text


def test_config_defaults_kept_for_run_time_connections_are_masked_in_reprs() -> None:
    login = '{"op":"login","args":"DEFAULTS-SECRET"}'
    config = config_from_dict(
        {
            "defaults": {"subscribe": [login], "url": "wss://h.example/ws?token=DEFAULTS-TK"},
            "connections": {"x": {"exchange": "raw"}},
        }
    )
    assert config.defaults["subscribe"] == [login]  # kept as written, shown masked
    shown = repr(config)
    assert 'defaults={\'subscribe\': [\'{"op":"login","args":"***"}\']' in shown
    assert "DEFAULTS-" not in shown and "DEFAULTS-" not in str(dict(config.__rich_repr__()))
