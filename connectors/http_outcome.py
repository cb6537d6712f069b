"""What an HTTP answer means for an outward action: the one mapping every HTTP connector uses.

- 2xx: done.
- no answer, 1xx, 429 (rate limited) and 5xx: nothing was done and it may work later, so the outbox
  retries it with the same idempotency key (:class:`TemporaryError`);
- 3xx: a redirect is never followed (it could send the request somewhere the card did not show), and
  any other 4xx: the request as it is will never succeed (:class:`PermanentError`).
"""

from __future__ import annotations

from connectors.base import PermanentError, TemporaryError


def http_outcome(
    status: int | None, who: str, detail: str = "", what: str = "the request"
) -> TemporaryError | PermanentError | None:
    """The error to raise for ``status`` from ``who`` (e.g. "Stripe", a destination's name) about ``what``
    was asked, with ``detail`` (the service's own message) after it; None when the answer is a success."""
    said = f": {detail}" if detail else ""
    if not status:
        return TemporaryError(f"{who} gave no answer{said}")
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return PermanentError(f"{who} answered a redirect (HTTP {status}); redirects are not followed")
    if status == 429 or status >= 500 or status < 200:
        return TemporaryError(f"{who} answered HTTP {status}{said}")
    return PermanentError(f"{who} refused {what} (HTTP {status}){said}")
