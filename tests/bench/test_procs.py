import os
import sys
from pathlib import Path

import aiohttp

from bench.procs import PYTHON, child_env, cpu_seconds, spawn, until_idle


def test_cpu_seconds_reads_this_process() -> None:
    times = os.times()
    assert 0 <= cpu_seconds(os.getpid()) <= times.user + times.system + 0.05


def test_child_env_drops_the_machines_settings(monkeypatch) -> None:
    monkeypatch.setenv("COO_TELEGRAM__TOKEN", "from-the-machine")
    monkeypatch.setenv("OPENAI_API_KEY", "from-the-machine")
    env = child_env({"COO_DATA_DIR": "/x"})
    assert "COO_TELEGRAM__TOKEN" not in env and "OPENAI_API_KEY" not in env
    assert env["COO_DATA_DIR"] == "/x" and "PYTHONPATH" not in env


async def test_fake_telegram_process_hands_out_pushed_messages(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "tests.fakes.telegram_api", "--token", "1:T"]
    async with spawn("fake", argv, child_env({}, repo_on_path=True), tmp_path, ready_timeout=30) as child:
        root = next(line for _, line in child.lines if line.startswith("ready ")).split()[1]
        async with aiohttp.ClientSession() as http:
            body = {"messages": [{"user_id": 5, "chat_id": 5, "text": "hello"}]}
            async with http.post(f"{root}/_fake/push", json=body) as response:
                (update_id,) = (await response.json())["update_ids"]
            async with http.get(f"{root}/bot1:T/getUpdates", params={"timeout": "5"}) as response:
                updates = (await response.json())["result"]
            async with http.post(f"{root}/bot1:T/sendMessage", json={"chat_id": 5, "text": "echo: hello"}) as r:
                assert r.status == 200
            async with http.get(f"{root}/_fake/calls", params={"after": "0", "method": "sendMessage"}) as response:
                calls = (await response.json())["calls"]
            async with http.get(f"{root}/_fake/handouts") as response:
                handed = (await response.json())["handed_out"]
    assert [u["message"]["text"] for u in updates] == ["hello"]
    assert [(c["chat_id"], c["text"]) for c in calls] == [(5, "echo: hello")]
    assert calls[0]["at"] >= handed[str(update_id)]
    assert child.proc.returncode is not None  # stopped when the block exited


async def test_fake_model_process_echoes_and_lists_requests(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "tests.fakes.openai_api", "--api-key", "sk-k", "--echo-limit", "5"]
    async with spawn("fake", argv, child_env({}, repo_on_path=True), tmp_path, ready_timeout=30) as child:
        base = next(line for _, line in child.lines if line.startswith("ready ")).split()[1]
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-k"}) as http:
            body = {"model": "m", "messages": [{"role": "user", "content": "hello world"}]}
            async with http.post(f"{base}/chat/completions", json=body) as response:
                answer = await response.json()
            async with http.get(f"{base.removesuffix('/v1')}/_fake/requests") as response:
                requests = (await response.json())["requests"]
    assert answer["choices"][0]["message"]["content"] == "echo: hello"
    assert answer["usage"]["prompt_tokens"] > 0
    assert [(r["path"], r["last_user"]) for r in requests] == [("/v1/chat/completions", "hello world")]


async def test_until_idle_returns_only_after_a_busy_child_settled(tmp_path: Path) -> None:
    done = tmp_path / "done"
    script = (
        "import pathlib, time\n"
        "while time.process_time() < 0.5: pass\n"
        f"pathlib.Path({str(done)!r}).write_text('x')\n"
        "time.sleep(30)\n"
    )
    async with spawn("busy", [PYTHON, "-c", script], child_env({}), tmp_path) as child:
        await until_idle(child.pid, window_s=0.1, quiet_windows=2)
        assert done.exists()  # the busy part was over before it returned
