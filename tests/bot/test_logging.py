"""I4: secrets never reach the logs."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from bot.cli import _secrets
from bot.logging_setup import REDACTED, configure_logging
from bot.messages import InboundMessage
from bot.runtime import open_runtime
from tests.conftest import RecordingChannel, llm_settings, make_settings
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import made_up_token

# Fake credentials shaped like real ones: the Telegram token is made up per run (no token-shaped value in the tree).
TG_TOKEN = made_up_token(123456789)
SLACK_TOKEN = "xox" + "b-1234-5678-abcdefgh"


async def test_secrets_are_redacted_everywhere(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.fail(500, times=2)
    settings = make_settings(
        tmp_path,
        llm=llm_settings(fake_llm, max_attempts=2),
        telegram={"token": TG_TOKEN},
        smtp={"password": "hunter2-smtp-pass"},
    )
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    configure_logging("DEBUG", _secrets(settings), handler)
    try:
        log = logging.getLogger("test.secrets")
        log.info("token is %s", TG_TOKEN)
        log.warning("url https://api.telegram.org/bot%s/getMe", TG_TOKEN)
        log.error("smtp login with hunter2-smtp-pass failed; key %s", fake_llm.api_key)
        log.info("unknown slack token %s and app token xapp-1-A0-12345678", SLACK_TOKEN)
        try:
            raise ValueError(f"boom {TG_TOKEN}")
        except ValueError:
            log.exception("with traceback")
        settings = settings.model_copy(update={"telegram": settings.telegram.model_copy(update={"token": None})})
        async with open_runtime(settings, console=False) as rt:
            rt.dispatcher.attach(RecordingChannel("rec"))
            await rt.dispatcher.handle(InboundMessage("rec", "1001", "telegram:1001", "hi", update_key="k"))
            events = await rt.db.events()
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    for secret in (
        TG_TOKEN,
        "hunter2-smtp-pass",
        fake_llm.api_key,
        SLACK_TOKEN,
        "xapp-1-A0-12345678",
    ):
        assert secret not in text
    assert text.count(REDACTED) >= 7
    assert "model unreachable" in text
    assert all(fake_llm.api_key not in str(e.payload) for e in events)
    assert logging.getLogger("httpx").level == logging.WARNING
    assert logging.getLogger("httpcore").level == logging.WARNING
