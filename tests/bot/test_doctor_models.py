"""`coo doctor` as a real process: the model endpoint reached with the credentials its URL holds (basic
auth, never printed), each fallback checked, and the price every model's calls are counted at."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bot.test_cli import clean_env, run_coo
from tests.fakes.openai_api import FakeOpenAI

USER, PASSWORD = "gw-user", "gw-pass-4242"


async def test_doctor_reaches_a_gateway_with_url_credentials_and_shows_each_models_price(tmp_path: Path) -> None:
    async with FakeOpenAI() as gateway, FakeOpenAI(api_key="sk-backup-key-0000") as backup:
        gateway.basic_auth = (USER, PASSWORD)
        with_credentials = gateway.base_url.replace("http://", f"http://{USER}:{PASSWORD}@")
        fallbacks = [{"base_url": backup.base_url, "api_key": backup.api_key, "model": "gpt-4o-mini"}]
        env = clean_env(
            tmp_path,
            COO_LLM__BASE_URL=with_credentials,
            COO_LLM__MODEL="llama3.1:8b",
            COO_LLM__FALLBACKS=json.dumps(fallbacks),
        )
        code, out, err = await run_coo(["doctor"], env, tmp_path)
    assert code == 0, out + err
    host = gateway.base_url.removeprefix("http://")
    assert f"[ok]   model: llama3.1:8b at http://{host} reachable" in out
    assert f"[ok]   model fallback 1: gpt-4o-mini at {backup.base_url} reachable" in out
    assert (
        "[--]   price: llama3.1:8b (main): 15.00/75.00 USD per million tokens in/out, no known price, so counted "
        "high: set COO_LLM__FREE=true or COO_LLM__PRICES"
    ) in out
    assert "[ok]   price: gpt-4o-mini (fallback 1): 0.15/0.60 USD per million tokens in/out, the published price" in out
    for secret in (PASSWORD, backup.api_key):
        assert secret not in out + err
