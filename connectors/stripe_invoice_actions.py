"""What an invoice card approves, exactly as Stripe will get it: the ``invoice.send`` action (customer,
lines in minor units, due date) and the ``invoice.void`` action."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from connectors.base import Action
from memory.addresses import normalise_address


class InvoiceLine(BaseModel):
    """One line: what, how many, at what unit price (minor units)."""

    model_config = {"frozen": True, "extra": "forbid"}

    description: str = Field(min_length=1, max_length=500)
    quantity: int = Field(default=1, ge=1, le=100_000)
    unit_amount: int = Field(ge=1, le=99_999_999_99)

    @field_validator("description")
    @classmethod
    def _clean(cls, value: str) -> str:
        text = " ".join(value.split())
        if not text:
            raise ValueError("a line needs a description")
        return text

    @property
    def total(self) -> int:
        """quantity x unit amount."""
        return self.quantity * self.unit_amount


class InvoiceAction(Action):
    """One invoice exactly as it will be created and sent."""

    kind: Literal["invoice.send"] = "invoice.send"
    customer_name: str = Field(min_length=1, max_length=200)
    customer_email: str
    contact_id: str | None = None
    currency: str = Field(pattern=r"^[a-z]{3}$")
    lines: tuple[InvoiceLine, ...] = Field(min_length=1, max_length=20)
    due: date

    @field_validator("customer_email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalise_address(value)

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def total(self) -> int:
        """The sum of the lines, in minor units."""
        return sum(line.total for line in self.lines)

    @model_validator(mode="after")
    def _not_huge(self) -> InvoiceAction:
        if self.total > 99_999_999_99:
            raise ValueError("the total is larger than Stripe accepts")
        return self


class VoidAction(Action):
    """Void one sent invoice (it stays in Stripe, marked void; nothing is owed any more)."""

    kind: Literal["invoice.void"] = "invoice.void"
    invoice_id: str = Field(pattern=r"^in_[A-Za-z0-9]+$")
    number: str
    customer_name: str
    customer_email: str
    currency: str
    total: int
