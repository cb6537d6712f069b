"""`coo doctor` as a real process checks the inbox against Dovecot: it logs in, lists the folders and says
whether IDLE is offered; a wrong password, a missing folder or a closed port is one clear [FAIL] line, and the
password never appears."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.bot.test_cli import clean_env, run_coo
from tests.fakes.dovecot import PASSWORD, USER, Dovecot
from tests.fakes.smtp_server import free_port
from tests.inbox.mails import mail


def imap_env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    values = {
        "COO_IMAP__HOST": "127.0.0.1",
        "COO_IMAP__PORT": str(port),
        "COO_IMAP__USERNAME": USER,
        "COO_IMAP__PASSWORD": PASSWORD,
        "COO_IMAP__SECURITY": "none",
        "COO_IMAP__TIMEOUT_S": "5",
        **extra,
    }
    return clean_env(tmp_path, **values)


def inbox_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if " inbox: " in line]


async def test_doctor_logs_in_lists_folders_and_says_idle(tmp_path: Path, dovecot: Dovecot) -> None:
    await asyncio.to_thread(dovecot.append, mail(), "Sponsors")
    code, out, err = await run_coo(["doctor"], imap_env(tmp_path, dovecot.port), tmp_path)
    assert code == 0, out + err
    assert inbox_lines(out) == [
        f"[ok]   inbox: logged in as {USER} at 127.0.0.1:{dovecot.port} (none); reading INBOX of 2 folders; "
        "IDLE supported"
    ]
    assert PASSWORD not in out + err
    assert all(b"\\Seen" not in flags for flags in (await asyncio.to_thread(dovecot.flags, "Sponsors")).values())


async def test_doctor_names_a_wrong_password_a_missing_folder_and_a_closed_port(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    wrong = imap_env(tmp_path, dovecot.port, COO_IMAP__PASSWORD="not-the-password-91")
    code, out, err = await run_coo(["doctor"], wrong, tmp_path)
    assert code == 1
    assert inbox_lines(out) == [
        f"[FAIL] inbox: login refused for {USER} at 127.0.0.1:{dovecot.port} (none): check COO_IMAP__USERNAME and "
        "COO_IMAP__PASSWORD"
    ]
    assert "not-the-password-91" not in out + err and "Traceback" not in err
    missing = imap_env(tmp_path, dovecot.port, COO_IMAP__FOLDERS='["INBOX", "Archive"]')
    code, out, _ = await run_coo(["doctor"], missing, tmp_path)
    assert code == 1 and "no folder Archive (COO_IMAP__FOLDERS); found: INBOX" in inbox_lines(out)[0]
    code, out, err = await run_coo(["doctor"], imap_env(tmp_path, free_port()), tmp_path)
    assert code == 1 and inbox_lines(out)[0].startswith("[FAIL] inbox: cannot reach 127.0.0.1:")
    assert PASSWORD not in out + err


async def test_doctor_says_how_to_turn_the_inbox_on(tmp_path: Path) -> None:
    code, out, _ = await run_coo(["doctor"], clean_env(tmp_path), tmp_path)
    assert code == 0, out
    assert "[--]   inbox: not configured; set COO_IMAP__HOST, COO_IMAP__USERNAME and COO_IMAP__PASSWORD" in out
