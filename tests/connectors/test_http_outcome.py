"""The one HTTP-status-to-outcome mapping every HTTP connector uses."""

from __future__ import annotations

import pytest

from connectors.base import PermanentError, TemporaryError
from connectors.http_outcome import http_outcome


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_is_done(status: int) -> None:
    assert http_outcome(status, "blog") is None


@pytest.mark.parametrize("status", [None, 0, 100, 429, 500, 502, 503, 599])
def test_no_answer_429_and_5xx_may_work_later(status: int | None) -> None:
    assert isinstance(http_outcome(status, "blog", "busy"), TemporaryError)


@pytest.mark.parametrize("status", [301, 302, 307, 308, 400, 401, 403, 404, 409, 422])
def test_redirects_and_other_4xx_never_succeed_as_they_are(status: int) -> None:
    assert isinstance(http_outcome(status, "blog"), PermanentError)


def test_the_reason_names_who_answered_what_and_their_message() -> None:
    refused = http_outcome(401, "blog", "bad signature", "the post")
    assert str(refused) == "blog refused the post (HTTP 401): bad signature"
    assert str(http_outcome(307, "blog", "moved")) == "blog answered a redirect (HTTP 307); redirects are not followed"
    assert str(http_outcome(503, "Stripe", "down")) == "Stripe answered HTTP 503: down"
    assert str(http_outcome(None, "Stripe")) == "Stripe gave no answer"
