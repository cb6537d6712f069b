"""The ``coo`` command line.

Each subcommand is one small function taking the parsed arguments and returning an exit code, plus
one entry in :func:`subcommands`. Every failure the user can cause or meet at start ends as ONE line
on stderr and a non-zero exit code (2 for bad configuration or usage, 1 for a failed start); the
details of an unexpected failure go to the log at DEBUG.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot import eventloop
from bot.logging_setup import RedactingFilter, configure_logging
from bot.secret_values import secrets_of
from bot.settings import ConfigError, Settings, load_settings
from memory.errors import UserFacingError

log = logging.getLogger("coo")

EXIT_CONFIG = 2
EXIT_FAILED = 1
LOG_FILE_NAME = "coo.log"


class CommandError(UserFacingError):
    """A failure to report as one line: ``coo: <message>``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Subcommand:
    """One ``coo <name>``: its help line, its arguments and the function that runs it."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] = field(default=lambda _: None)


# -- shared steps ------------------------------------------------------------------------------
_redactor = RedactingFilter()


_secrets = secrets_of  # the older name, still imported by tests/bot/test_logging.py


def load(args: argparse.Namespace) -> Settings:
    """Settings from the environment and config files; logging to stderr, with redaction."""
    settings = load_settings(args.config if args.config is not None else "default")
    setup_logging(settings)
    return settings


def setup_logging(settings: Settings, log_file: Path | None = None) -> None:
    """Logging with every configured secret redacted; to ``log_file`` when given, else stderr."""
    global _redactor
    handler = logging.FileHandler(log_file, encoding="utf-8") if log_file is not None else None
    _redactor = configure_logging(settings.log_level, secrets_of(settings), handler)


def ensure_data_dir(settings: Settings) -> Path:
    """Create the data dir if needed and prove it is writable; CommandError naming COO_DATA_DIR otherwise."""
    from bot.doctor import check_data_dir

    check = check_data_dir(settings)
    if not check.ok:
        raise CommandError(f"COO_DATA_DIR: {check.detail}", EXIT_CONFIG)
    return settings.data_dir


def console_only(args: argparse.Namespace, settings: Settings) -> bool:
    """True when the terminal is the only channel (then logs go to a file, not onto the prompt)."""
    return args.command == "chat" or not (settings.telegram.configured or settings.slack.configured)


# -- subcommands -------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    """``coo run`` / ``coo chat``: serve until Ctrl-C, SIGTERM or end of console input."""
    settings = load(args)
    data_dir = ensure_data_dir(settings)
    log_file = None
    if console_only(args, settings):
        # The terminal belongs to the conversation: log lines go to a file in the data dir.
        log_file = data_dir / LOG_FILE_NAME
        setup_logging(settings, log_file)
    from bot.serve import serve

    with contextlib.suppress(KeyboardInterrupt):
        eventloop.run(serve(settings, console=True if args.command == "chat" else None, log_file=log_file))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """``coo doctor``: what is configured, reachable, missing (``--quick``: no network)."""
    from bot.doctor import run_doctor

    return eventloop.run(run_doctor(load(args), quick=args.quick))


def cmd_export(args: argparse.Namespace) -> int:
    """``coo export``: records, events, approvals, notes and goals (with tasks and attempts) as JSON Lines."""
    from bot.export import export_all, git_work_tree

    out = Path(args.out).resolve()
    repo = git_work_tree(out)
    if repo is not None and not args.force:
        raise CommandError(
            f"export: {out} is inside the git work tree {repo}; an export holds your messages and contacts, "
            "so write it elsewhere or pass --force",
            EXIT_CONFIG,
        )
    settings = load(args)
    if not (settings.data_dir / "coo.sqlite").is_file():
        raise CommandError(f"export: nothing to export: {settings.data_dir} holds no solo-coo data (COO_DATA_DIR)")
    counts = eventloop.run(export_all(settings.data_dir, out))
    print(", ".join(f"{name}: {n}" for name, n in counts.items()) + f" -> {out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """``coo import DIR``: restore an export into an empty data dir."""
    from bot.backup import ImportRefused, import_all

    settings = load(args)
    try:
        key = Path(args.key) if args.key else None
        counts = eventloop.run(import_all(Path(args.source), settings, key))
    except ImportRefused as exc:
        raise CommandError(f"import: {exc}", EXIT_CONFIG) from None
    print(", ".join(f"{name}: {n}" for name, n in counts.items()) + f" -> {settings.data_dir.resolve()}")
    return 0


def cmd_onboard(args: argparse.Namespace) -> int:
    """``coo onboard``: interactive setup that checks each answer and writes the config file."""
    from bot.onboard import OnboardingStopped, run_onboarding

    try:
        return eventloop.run(run_onboarding(Path(args.out) if args.out else None))
    except OnboardingStopped as exc:
        raise CommandError(f"onboarding stopped: {exc}; nothing was written") from None


def cmd_mcp(args: argparse.Namespace) -> int:
    """``coo mcp``: MCP servers, their tools and each tool's class (read / write)."""
    from bot.mcp_cli import list_mcp_tools

    settings = load(args)
    ensure_data_dir(settings)
    print(eventloop.run(list_mcp_tools(settings)))
    return 0


def cmd_slack_manifest(args: argparse.Namespace) -> int:
    """``coo slack-manifest``: the Slack app manifest to paste at api.slack.com/apps."""
    from bot.slack_manifest import manifest, render

    print(render(manifest(name=args.name, http_url=args.http_url), args.format))
    return 0


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="coo-export", help="output folder (default ./coo-export)")
    p.add_argument("--force", action="store_true", help="write even inside a git work tree")


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a folder written by `coo export`")
    p.add_argument("--key", help="install.key of the install that made the export: restore as that install")


def _doctor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="config and data dir only, no network (for health checks)")


def _onboard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="config file to write (default: .env in the user config dir)")


def _manifest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    p.add_argument("--name", default="solo-coo", help="the app's name in Slack")
    p.add_argument("--http-url", help="HTTP mode: https://<host>/slack/events instead of Socket Mode")


def cmd_pair(args: argparse.Namespace) -> int:
    """``coo pair``: open pairing for one new operator (prints a one-time code; operators are told)."""
    from bot.operators_cli import open_pairing

    settings = load(args)
    ensure_data_dir(settings)
    return eventloop.run(open_pairing(settings))


def cmd_operators(args: argparse.Namespace) -> int:
    """``coo operators [--remove ID]``: list operators, or remove a paired one at once."""
    from bot.operators_cli import manage_operators

    settings = load(args)
    ensure_data_dir(settings)
    return eventloop.run(manage_operators(settings, args.remove))


def cmd_web_login(args: argparse.Namespace) -> int:
    """``coo web-login``: a one-time link to the web console (10 minutes, one use)."""
    from bot.web.links import login_link

    settings = load(args)
    if not settings.web.enabled:
        raise CommandError("web-login: the web console is off (COO_WEB__LISTEN is empty)", EXIT_CONFIG)
    ensure_data_dir(settings)
    print(f"web console: {eventloop.run(login_link(settings))}")
    print("The link works once, for 10 minutes; `coo run` must be running.")
    return 0


def cmd_web_sessions(args: argparse.Namespace) -> int:
    """``coo web-sessions [--revoke ID]``: live console sessions, or end one at once."""
    from bot.web.links import manage_sessions

    settings = load(args)
    ensure_data_dir(settings)
    print("\n".join(eventloop.run(manage_sessions(settings, args.revoke))))
    return 0


def _web_sessions_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--revoke", metavar="ID", help="end the session with this id (from the list) at once")


def _operators_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--remove", metavar="ID", help="remove a paired operator, e.g. telegram:123456")


def subcommands() -> list[Subcommand]:
    """Every ``coo`` subcommand, in help order."""
    return [
        Subcommand("run", "every configured channel (the console when none is)", cmd_run),
        Subcommand("chat", "the console channel in this terminal", cmd_run),
        Subcommand("onboard", "interactive setup: model, Telegram, Slack, email, Stripe", cmd_onboard, _onboard_args),
        Subcommand("doctor", "what is configured, reachable or missing", cmd_doctor, _doctor_args),
        Subcommand("export", "write events, records, approvals, notes, goals as JSON Lines", cmd_export, _export_args),
        Subcommand("import", "restore an export into an empty data dir", cmd_import, _import_args),
        Subcommand("slack-manifest", "print the Slack app manifest", cmd_slack_manifest, _manifest_args),
        Subcommand("pair", "open pairing: a one-time code that makes its sender an operator", cmd_pair),
        Subcommand("operators", "list operators, or remove a paired one", cmd_operators, _operators_args),
        Subcommand("mcp", "MCP servers, their tools and each tool's class (read / write)", cmd_mcp),
        Subcommand("web-login", "a one-time link to the web console", cmd_web_login),
        Subcommand("web-sessions", "list web console sessions, or end one", cmd_web_sessions, _web_sessions_args),
    ]


def version() -> str:
    """The installed package version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("solo-coo")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="coo", description="solo-coo: an AI COO for a one-person company")
    parser.add_argument("--version", action="version", version=f"coo {version()}")
    parser.add_argument(
        "--config", metavar="FILE", help="read this config file only (default: ./.env and the user config dir's .env)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in subcommands():
        p = sub.add_parser(command.name, help=command.help)
        command.arguments(p)
        p.set_defaults(handler=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``coo`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"coo: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except CommandError as exc:
        print(f"coo: {_redactor.redact(str(exc))}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"coo: {args.command} interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # Anything unexpected at start: one line here, the traceback in the log at DEBUG.
        log.debug("coo %s failed", args.command, exc_info=True)
        reason = _redactor.redact(" ".join(str(exc).split()) or type(exc).__name__)
        print(
            f"coo: {args.command} failed: {type(exc).__name__}: {reason} (COO_LOG_LEVEL=DEBUG shows the details)",
            file=sys.stderr,
        )
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
