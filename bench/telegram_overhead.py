"""The Telegram reply-path benchmark; kept under its old name. It now measures a deployment:
``coo run`` as its own process against fake Bot API and model processes, see :mod:`bench.deployed`.

    python -m bench.telegram_overhead [options of bench.deployed]
"""

from __future__ import annotations

from bench.deployed import cli

if __name__ == "__main__":
    cli()
