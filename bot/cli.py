"""The ``coo`` command line: run, chat, doctor."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from bot.logging_setup import configure_logging, url_secrets
from bot.settings import ConfigError, Settings, load_settings


def _secrets(settings: Settings) -> list[str]:
    values = [
        settings.llm.api_key,
        settings.telegram.token,
        settings.telegram.webhook_secret,
        settings.slack.bot_token,
        settings.slack.app_token,
        settings.slack.signing_secret,
        settings.smtp.password,
    ]
    found = [v.get_secret_value() for v in values if v is not None]
    return found + url_secrets(settings.llm.base_url) + url_secrets(settings.telegram.api_base_url)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``coo`` console script."""
    parser = argparse.ArgumentParser(prog="coo", description="solo-coo: an AI COO for a one-person company")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="every configured channel (the console when none is)")
    sub.add_parser("chat", help="the console channel in this terminal")
    sub.add_parser("doctor", help="what is configured, reachable or missing")
    export = sub.add_parser("export", help="write records, events, approvals and notes as JSON Lines")
    export.add_argument("--out", default="coo-export", help="output folder (default ./coo-export)")
    sub.add_parser("pair", help="open pairing: print a one-time code that makes its sender an operator")
    operators = sub.add_parser("operators", help="list operators, or remove a paired one")
    operators.add_argument("--remove", metavar="ID", help="e.g. telegram:123456")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"coo: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, _secrets(settings))
    if args.command == "export":
        from pathlib import Path

        from bot.export import export_all

        counts = asyncio.run(export_all(settings.data_dir, Path(args.out)))
        print(", ".join(f"{name}: {n}" for name, n in counts.items()) + f" -> {Path(args.out).resolve()}")
        return 0
    if args.command in ("pair", "operators"):
        from bot.operators_cli import manage_operators, open_pairing

        if args.command == "pair":
            return asyncio.run(open_pairing(settings))
        return asyncio.run(manage_operators(settings, args.remove))
    if args.command == "doctor":
        from bot.doctor import run_doctor

        return asyncio.run(run_doctor(settings))
    from bot.runtime import serve

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, console=True if args.command == "chat" else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
