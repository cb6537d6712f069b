"""Every connector, found in the ``connectors`` folder, and what is built from them: the registry of their
kinds and the settings fields they read. A module that declares ``CONNECTOR = ConnectorSpec(...)`` at its
top level is a connector; adding one is adding its module (and its test), nothing else."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field, create_model

import connectors
from connectors.base import ActionKind, ConnectorSpec, Deps
from connectors.registry import Registry

_DECLARES = re.compile(r"^CONNECTOR\b", re.MULTILINE)
M = TypeVar("M", bound=BaseModel)


@cache
def all_connectors() -> tuple[ConnectorSpec, ...]:
    """Every connector, in module-name order. Only modules that declare one are imported: the folder also
    holds the inbox reader and the webhook server, whose imports would slow every start of the CLI."""
    found = []
    for info in sorted(pkgutil.iter_modules(connectors.__path__), key=lambda i: i.name):
        path = Path(getattr(info.module_finder, "path", "")) / f"{info.name}.py"
        if info.ispkg or not path.is_file() or not _DECLARES.search(path.read_text(encoding="utf-8")):
            continue
        spec = getattr(importlib.import_module(f"connectors.{info.name}"), "CONNECTOR", None)
        if not isinstance(spec, ConnectorSpec):
            raise TypeError(f"connectors.{info.name}.CONNECTOR is not a ConnectorSpec")
        found.append(spec)
    fields = [spec.settings_field for spec in found]
    if len(set(fields)) != len(fields):
        raise ValueError(f"two connectors read the same settings field: {sorted(fields)}")
    return tuple(found)


def settings_model() -> type[BaseModel]:
    """A model with one field per connector, named by its settings field: the settings root inherits it,
    so ``COO_SMTP__HOST`` reaches ``SMTPSettings.host`` without the root naming any connector."""
    fields: dict[str, Any] = {
        spec.settings_field: (spec.settings_model, Field(default_factory=spec.settings_model))
        for spec in all_connectors()
    }
    return create_model("ConnectorSettings", **fields)


def settings_of(settings: object, model: type[M]) -> M:
    """The settings of the connector whose model is ``model``, typed (the root's connector fields are made
    at run time, so a type checker cannot see them)."""
    spec = next((s for s in all_connectors() if s.settings_model is model), None)
    found = getattr(settings, spec.settings_field, None) if spec else None
    if not isinstance(found, model):
        raise LookupError(f"no connector reads {model.__name__}")
    return found


def build_registry(settings: object, deps: Deps, extra: Iterable[ActionKind[Any]] = ()) -> Registry:
    """The registry of every kind, each connector configured from its field of ``settings``, plus ``extra``
    kinds declared elsewhere (the goal plan card)."""
    kinds: list[ActionKind[Any]] = []
    for spec in all_connectors():
        kinds += spec.make(getattr(settings, spec.settings_field), deps)
    return Registry([*kinds, *extra])


def known_kinds() -> list[str]:
    """The name of every action kind (for validating settings that name kinds)."""
    unconfigured = Deps(records=None, currency="usd")
    return [kind.name for spec in all_connectors() for kind in spec.make(spec.settings_model(), unconfigured)]
