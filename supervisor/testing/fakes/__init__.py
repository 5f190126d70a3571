"""Rule-enforcing fakes of real exchanges, one module per exchange.

Each module holds a session handler for :func:`supervisor.testing.open_fake_exchange`
(``handler=FakeBinance()``) that plays the exchange's side of a session by the venue's
documented and observed rules, and exports the constants it cites (ping intervals,
limits, ``DEFAULT_EPOCH_MS`` / ``EPOCH_MS``, first ids), so tests can assert against
them. The fake classes themselves are also exported from :mod:`supervisor.testing`.

- :mod:`supervisor.testing.fakes.binance`: :class:`FakeBinance`, :class:`FakeBinanceUsdm`
- :mod:`supervisor.testing.fakes.okx`: :class:`FakeOkx`
- :mod:`supervisor.testing.fakes.deribit`: :class:`FakeDeribit`
- :mod:`supervisor.testing.fakes.bybit`: :class:`FakeBybit`
- :mod:`supervisor.testing.fakes.venue_book`: :class:`VenueBook`, one symbol's true book,
  which the Binance and OKX fakes stream and serve over REST
  (:meth:`supervisor.testing.fakes.rest.FakeRest.serve_books`)
"""
