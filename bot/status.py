"""What ``coo run`` prints at start and what /status says: channels, model, data dir, access."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bot.messages import Channel
from bot.settings import redact_url

if TYPE_CHECKING:
    from bot.running import Runtime


def status_lines(runtime: Runtime) -> list[str]:
    """The start banner and /status: channels, model or offline, data dir, access mode (never a credential)."""
    settings = runtime.settings
    names = [c.name for c in runtime.channels] or ["none"]
    llm = runtime.coordinator.llm
    if not llm.configured:
        model = "offline mode (no model configured: set COO_LLM__BASE_URL / COO_LLM__API_KEY)"
    elif not llm.available():
        model = f"{llm.model} (unreachable: offline mode until it answers)"
    else:
        model = f"{llm.model} at {redact_url(settings.llm.base_url or 'https://api.openai.com/v1')}"
    if not chat_platforms(runtime):
        access = "this terminal only (no chat platform configured)"
    elif runtime.pairing_code:
        access = "pairing open (send /pair CODE from a chat to become the operator)"
    else:
        count = len(runtime.guard.operator_ids()) - 1
        access = f"{count} operator(s); `coo pair` opens pairing for another, `coo operators` lists them"
    return [
        f"channels: {', '.join(names)}",
        f"model: {model}",
        f"data dir: {settings.data_dir.resolve()}",
        f"access: {access}",
    ]


def chat_platforms(runtime: Runtime) -> list[Channel]:
    """The chat platforms it runs on (the terminal is not one)."""
    return [c for c in runtime.channels if c is not runtime.console]


def banner(runtime: Runtime, log_file: Path | None = None) -> str:
    """What ``coo run`` prints at start, before the first prompt."""
    lines = ["solo-coo is running.", *("  " + line for line in status_lines(runtime))]
    # A pairing code is only useful where someone can send /pair: a chat platform.
    if runtime.pairing_code and chat_platforms(runtime):
        ttl_min = runtime.settings.pairing_code_ttl_s // 60
        lines.append(f"  pairing code: {runtime.pairing_code} (one use, expires in {ttl_min} min)")
    if not runtime.settings.telegram.configured and not runtime.settings.slack.configured:
        lines.append(
            "  no chat platform configured: run `coo onboard` (or set COO_TELEGRAM__TOKEN / COO_SLACK__BOT_TOKEN)."
        )
    if runtime.web is not None and runtime.web.serving:
        address = runtime.web.settings.base_url
        lines.append(f"  web console: {address} (sign in: /web in a private chat, or coo web-login)")
    if log_file is not None:
        lines.append(f"  logs: {log_file}")
    if runtime.console is not None:
        lines.append("  type a message, /help for commands, Ctrl-D to quit.")
    return "\n".join(lines)
