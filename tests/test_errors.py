"""One exception root: every exception class of ours sits under ``CooError``, on the user-facing branch
only when its message is shown to the operator as is; and an action's refusal becomes a reply in one place."""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil

import pytest

from connectors.base import ActionError
from graph.errors import user_facing
from memory.errors import CooError, InternalError, UserFacingError
from tests.layout import PACKAGES

NOT_OURS = {"bot.channels.aiohttp_request.NotConnected"}
"""Must be the channel library's own ``NetworkError``, which the library catches."""
SHOWN_AS_IS = {
    "memory.errors.UserFacingError",
    "bot.backup.ImportRefused",  # one ``coo: import:`` line
    "bot.cli.CommandError",  # one ``coo:`` line
    "bot.settings.ConfigError",  # one line naming the variable, at start
    "memory.install.InstallKeyError",  # one line naming the key file, at start
}


@functools.cache
def exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == info.name:
                    found[f"{info.name}.{name}"] = value
    return found


def test_every_exception_of_ours_has_the_one_root_and_its_branch() -> None:
    classes = exception_classes()
    assert len(classes) >= 25  # the walk saw the packages
    rootless = sorted(name for name, cls in classes.items() if not issubclass(cls, CooError))
    assert rootless == sorted(NOT_OURS)
    shown = {name for name, cls in classes.items() if issubclass(cls, UserFacingError)}
    assert shown == SHOWN_AS_IS  # anything else reaching a reply handler gets the generic reply, as before
    for name, cls in classes.items():
        if cls is not CooError and name not in NOT_OURS:
            assert issubclass(cls, UserFacingError) != issubclass(cls, InternalError), name


def test_the_older_bases_still_catch_them() -> None:
    classes = exception_classes()
    assert issubclass(classes["connectors.base.ActionError"], ValueError)
    assert issubclass(classes["memory.task_states.TransitionRefused"], RuntimeError)
    assert issubclass(classes["memory.semantic.contracts.MemoryUnavailable"], RuntimeError)
    assert issubclass(classes["connectors.base.NotNeeded"], classes["connectors.base.PermanentError"])


def test_an_action_error_becomes_the_operators_reply_and_nothing_else_does() -> None:
    with pytest.raises(UserFacingError) as caught, user_facing():
        raise ActionError("No connector handles fax.send.")
    assert caught.value.reason == "No connector handles fax.send." and caught.value.__cause__ is None
    with pytest.raises(KeyError), user_facing():
        raise KeyError("internal")
