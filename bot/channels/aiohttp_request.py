"""python-telegram-bot's HTTP transport on aiohttp (a dependency already) instead of httpx.

A Bot API call costs about half the CPU this way (an ad-hoc timing against a local server), and under
a burst of chats the event loop's CPU per turn is what bounds the answers: ``python -m bench.deployed
--runs 3`` answered the 20 x 10 burst in 1.44-1.59 s (medians of two sets) against 1.82 s on httpx.
PTB turns statuses and bodies into its errors (``RetryAfter``, ``BadRequest``, ...) as with any
transport; here, as in PTB's own httpx transport, a timeout becomes ``TimedOut`` and any other
transport failure ``NetworkError``, of which :class:`NotConnected` says the request never left.

aiohttp has no write timeout: a request whose body cannot be written is bounded by the read timeout
(both are seconds for Bot API calls).
"""

from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

_FORM = "application/x-www-form-urlencoded"


class NotConnected(NetworkError):
    """No connection to the Bot API server could be made (refused, no route, DNS, connect timeout): the
    request never left, so sending it again cannot deliver anything twice."""


class AiohttpRequest(BaseRequest):
    """One aiohttp session with at most ``connection_pool_size`` connections; timeouts in seconds (None: none)."""

    def __init__(
        self,
        connection_pool_size: int = 1,
        read_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
    ) -> None:
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout (PTB adds a long poll's own timeout to it)."""
        return self._read_timeout

    async def initialize(self) -> None:
        """Open the session (again, after a shutdown)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                headers={"User-Agent": self.USER_AGENT},
            )

    async def shutdown(self) -> None:
        """Close the session and its connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """See :meth:`telegram.request.BaseRequest.do_request`."""
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("AiohttpRequest is not initialized")
        read = self._read_timeout if isinstance(read_timeout, DefaultValue) else read_timeout
        connect = self._connect_timeout if isinstance(connect_timeout, DefaultValue) else connect_timeout
        pool = self._pool_timeout if isinstance(pool_timeout, DefaultValue) else pool_timeout
        # aiohttp's ``connect`` covers waiting for a pooled connection and opening one.
        waiting = None if connect is None or pool is None else connect + pool
        timeout = aiohttp.ClientTimeout(total=None, connect=waiting, sock_connect=connect, sock_read=read)
        try:
            # No redirects, as with PTB's httpx client: the token is in the URL and the body may be private.
            data, headers = _body(request_data)
            request = session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                proxy=self._proxy(url),
            )
            async with request as response:
                return response.status, await response.read()
        except aiohttp.ConnectionTimeoutError as exc:  # no connection within the connect and pool timeouts
            raise NotConnected(f"aiohttp.{type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:  # before ClientError: aiohttp's timeouts are both
            raise TimedOut from exc
        except aiohttp.ClientConnectorError as exc:
            raise NotConnected(f"aiohttp.{type(exc).__name__}: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {exc}") from exc

    def _proxy(self, url: str) -> str | None:
        """The proxy the environment names for ``url``'s host (HTTP(S)_PROXY, NO_PROXY), as httpx honoured
        them; read once per host: aiohttp's own ``trust_env`` reads the environment (and ~/.netrc) on
        every request, which in an ad-hoc timing cost more CPU than the whole request."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        if key not in self._proxies:
            host = parts.hostname or ""
            bypass = bool(host) and urllib.request.proxy_bypass(host)
            self._proxies[key] = None if bypass else urllib.request.getproxies().get(parts.scheme)
        return self._proxies[key]


def _body(request_data: RequestData | None) -> tuple[aiohttp.FormData | bytes | None, dict[str, str] | None]:
    """Form fields as PTB encodes them (nested values as JSON strings); files as a multipart body.

    Without files the form is url-encoded here: given a dict, aiohttp builds a multipart writer
    (and a random boundary) for every request before it settles on url-encoding.
    """
    if request_data is None:
        return None, None
    files = request_data.multipart_data
    if not files:
        return request_data.url_encoded_parameters().encode(), {"Content-Type": _FORM}
    fields = request_data.json_parameters
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    for name, (filename, content, mimetype) in files.items():
        form.add_field(name, content, filename=filename, content_type=mimetype)
    return form, None
