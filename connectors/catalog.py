"""Every connector, and the registry built from them. Adding a connector is one module plus one line here
(and its settings field in ``bot/settings.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from connectors import email, publish, stripe_invoices
from connectors.base import ActionKind, Deps
from connectors.registry import Registry
from connectors.settings import SMTPSettings


@dataclass(frozen=True)
class ConnectorSpec:
    """A connector: the settings field it reads (``COO_<FIELD>__*``) and the function that makes its kinds."""

    settings_field: str
    settings_model: type[BaseModel]
    make: Callable[[Any, Deps], list[ActionKind[Any]]]


CONNECTORS: tuple[ConnectorSpec, ...] = (
    ConnectorSpec("smtp", SMTPSettings, email.connector),
    ConnectorSpec("stripe", stripe_invoices.StripeSettings, stripe_invoices.connector),
    ConnectorSpec("publish", publish.PublishSettings, publish.connector),
)


def build_registry(settings: object, deps: Deps, extra: Iterable[ActionKind[Any]] = ()) -> Registry:
    """The registry of every kind, each connector configured from its field of ``settings``, plus ``extra``
    kinds declared elsewhere (the goal plan card)."""
    kinds: list[ActionKind[Any]] = []
    for spec in CONNECTORS:
        kinds += spec.make(getattr(settings, spec.settings_field), deps)
    return Registry([*kinds, *extra])


def known_kinds() -> list[str]:
    """The name of every action kind (for validating settings that name kinds)."""
    unconfigured = Deps(records=None, currency="usd")
    return [kind.name for spec in CONNECTORS for kind in spec.make(spec.settings_model(), unconfigured)]
