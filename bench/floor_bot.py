"""The floor: the least a Telegram + model bot can do, to compare solo-coo against on the same driver.

A bare python-telegram-bot Application with long polling and its default settings, and one
``openai`` chat completion per text message (the message alone, no state, no tools), whose answer is
sent back as a reply. It reads the same variables as ``coo run``:

    COO_TELEGRAM__TOKEN, COO_TELEGRAM__API_BASE_URL, COO_LLM__BASE_URL, COO_LLM__API_KEY, COO_LLM__MODEL

    python -m bench.floor_bot
"""

from __future__ import annotations

import logging
import os
import sys

import openai
from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters

BANNER = "floor bot is running."


def build(env: dict[str, str]) -> Application:  # type: ignore[type-arg]
    """The PTB application, wired to the model named in ``env``."""
    root = env.get("COO_TELEGRAM__API_BASE_URL", "https://api.telegram.org")
    llm = openai.AsyncOpenAI(base_url=env["COO_LLM__BASE_URL"], api_key=env["COO_LLM__API_KEY"])
    model = env.get("COO_LLM__MODEL", "gpt-4o-mini")

    async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not message.text:
            return
        answer = await llm.chat.completions.create(
            model=model, messages=[{"role": "user", "content": message.text}], max_tokens=1024
        )
        await message.reply_text(answer.choices[0].message.content or "(empty)")

    async def announce(_: Application) -> None:  # type: ignore[type-arg]
        print(BANNER, file=sys.stderr, flush=True)

    app = (
        Application.builder()
        .token(env["COO_TELEGRAM__TOKEN"])
        .base_url(f"{root}/bot")
        .base_file_url(f"{root}/file/bot")
        .post_init(announce)
        .build()
    )
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, on_text))
    return app


def main() -> None:
    """Poll until SIGINT/SIGTERM (PTB's ``run_polling`` with its defaults)."""
    logging.basicConfig(level=logging.WARNING)
    build(dict(os.environ)).run_polling()


if __name__ == "__main__":
    main()
