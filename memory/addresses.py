"""Email addresses as the business's records hold them: one plain, lower-cased form, so a contact, an approval
digest and an SMTP envelope always compare the same bytes."""

from __future__ import annotations

import re

_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def normalise_address(value: str) -> str:
    """A plain, lower-cased address; raises ValueError for anything else (no display names, no lists)."""
    address = value.strip().strip("<>").strip()
    if not _ADDRESS.match(address) or len(address) > 254:
        raise ValueError(f"'{value.strip()}' is not an email address")
    local, _, domain = address.partition("@")
    return f"{local}@{domain.lower()}"
