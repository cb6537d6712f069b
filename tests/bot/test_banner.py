"""The start banner and /status never show a credential that sits inside a URL."""

from __future__ import annotations

from pathlib import Path

from bot.runtime import open_runtime
from bot.status import banner, status_lines
from tests.conftest import llm_settings, make_settings
from tests.fakes.openai_api import FakeOpenAI


async def test_banner_and_status_redact_url_credentials(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    llm = llm_settings(fake_llm, base_url=fake_llm.base_url.replace("http://", "http://coo:hunter2@"))
    async with open_runtime(make_settings(tmp_path, llm=llm), console=False) as rt:
        shown = banner(rt) + "\n".join(status_lines(rt))
    assert "hunter2" not in shown and "coo:" not in shown
    assert f"model: fake-model at http://[REDACTED]@127.0.0.1:{fake_llm.port}/v1" in shown
    assert "pairing code" not in shown  # an allow-list is configured: no code
