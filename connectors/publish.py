"""Posts through a signed webhook: the ``publish.post`` action kind.

Destinations are configured by the operator only (``COO_PUBLISH__WEBHOOK_URL`` and its secret, and named
ones in ``COO_PUBLISH__DESTINATIONS``). The model and any content can pick a destination by *name*; a URL
is never taken from them. The body is JSON signed with HMAC-SHA256 over the raw bytes (header
``X-Coo-Signature: sha256=<hex>``) and carries an ``Idempotency-Key`` header: the destination must treat
a repeated key as the same post. No redirect is followed. 2xx is success, 4xx permanent, 429, 5xx and
timeouts retried with the same key (connectors/http_outcome.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from connectors.base import (
    Action,
    ActionError,
    ActionKind,
    CommandSpec,
    ConnectorSpec,
    Context,
    Deps,
    Executed,
    PermanentError,
    Preview,
    Progress,
    TemporaryError,
    ToolSpec,
    parse_field_lines,
)
from connectors.http_outcome import http_outcome

SIGNATURE_HEADER = "X-Coo-Signature"
DEFAULT_DESTINATION = "default"
POST_USAGE = "Usage: /post [@destination] <title> | <text>"
EDIT_HELP = "Send the corrected post as lines: title=…, tags=a, b, and text=… (everything after text= is the text)."
MAX_TEXT_CHARS = 50_000


class Destination(BaseModel):
    """One place posts go: an http(s) URL and the secret that signs what is sent there."""

    url: str
    secret: SecretStr

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value


class PublishSettings(BaseModel):
    """Where posts can go. Only the operator configures these; nothing else can add a URL."""

    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    destinations: dict[str, Destination] = Field(default_factory=dict)
    timeout_s: float = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> PublishSettings:
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("COO_PUBLISH__WEBHOOK_SECRET is required when COO_PUBLISH__WEBHOOK_URL is set")
        if self.webhook_url and not self.webhook_url.startswith(("https://", "http://")):
            raise ValueError("COO_PUBLISH__WEBHOOK_URL must be an http(s) URL")
        return self

    def all(self) -> dict[str, Destination]:
        """Every destination by name (the single webhook is called "default")."""
        found = dict(self.destinations)
        if self.webhook_url and self.webhook_secret:
            found.setdefault(DEFAULT_DESTINATION, Destination(url=self.webhook_url, secret=self.webhook_secret))
        return found


class PostAction(Action):
    """One post exactly as it will be delivered."""

    kind: Literal["publish.post"] = "publish.post"
    destination: str = Field(min_length=1, max_length=50)
    title: str = Field(min_length=1, max_length=300)
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    tags: tuple[str, ...] = Field(default=(), max_length=20)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        title = " ".join(value.split())
        if not title:
            raise ValueError("the title is empty")
        return title

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value or [])
        tags = dict.fromkeys(str(t).strip().lower() for t in items if str(t).strip())
        if any(len(t) > 50 for t in tags):
            raise ValueError("a tag is longer than 50 characters")
        return tuple(tags)


class PublishArgs(BaseModel):
    """Arguments of the publish_post tool."""

    destination: str = Field(description="the name of a configured destination")
    title: str = Field(min_length=1)
    text: str = Field(min_length=1, description="the full text of the post")
    tags: list[str] = Field(default_factory=list)


class PublishPost(ActionKind[PostAction]):
    """``publish.post``: deliver one post to a configured destination."""

    name = "publish.post"
    title = "Publish this post?"
    args = PostAction
    command: ClassVar[CommandSpec | None] = CommandSpec("post", "Publish a post: /post <title> | <text>", POST_USAGE)
    edit_help = EDIT_HELP
    resumable = True  # the destination dedupes on the Idempotency-Key
    done_verb = "Published"
    activity = "publishing posts"

    def __init__(self, settings: PublishSettings) -> None:
        self._settings = settings
        self._destinations = settings.all()
        self.configured = bool(self._destinations)
        names = ", ".join(sorted(self._destinations)) or "none configured"
        self.tool = ToolSpec(
            "publish_post",
            f"Propose a post. Destinations (by name only): {names}. The operator sees the destination, the "
            "title and the full text on a card and must approve it before anything is published.",
            PublishArgs,
        )

    @property
    def noun(self) -> str:
        """What one action of this kind is called in messages ("That post is not valid")."""
        return "post"

    def _checked(self, fields: dict[str, Any]) -> PostAction:
        name = str(fields.get("destination", ""))
        if name not in self._destinations:
            known = ", ".join(sorted(self._destinations)) or "none (set COO_PUBLISH__WEBHOOK_URL)"
            raise ActionError(f"{name!r} is not a configured destination; destinations: {known}")
        return self.build(fields)

    def preview(self, action: PostAction) -> Preview:
        fields = [("Destination", action.destination), ("Title", action.title)]
        if action.tags:
            fields.append(("Tags", ", ".join(action.tags)))
        return Preview(self.title, tuple(fields), action.text)

    def summary(self, action: PostAction) -> str:
        return f'post "{action.title}" to {action.destination}'

    def targets(self, action: PostAction) -> tuple[str, ...]:
        return (action.destination,)

    async def from_tool(self, args: BaseModel, ctx: Context) -> PostAction:
        assert isinstance(args, PublishArgs)
        return self._checked(args.model_dump())

    async def from_command(self, text: str, ctx: Context) -> PostAction:
        """``[@blog] Title | text``: the only destination when there is one, else the named one."""
        head, bar, body = text.partition("|")
        head = head.strip()
        if not bar or not head or not body.strip():
            raise ActionError(POST_USAGE)
        if head.startswith("@"):
            name, _, title = head[1:].partition(" ")
        elif len(self._destinations) == 1:
            name, title = next(iter(self._destinations)), head
        else:
            name, title = DEFAULT_DESTINATION, head
        return self._checked({"destination": name, "title": title, "text": body.strip()})

    async def edit(self, action: PostAction, text: str, ctx: Context) -> PostAction:
        try:
            changes = parse_field_lines(text, ("title", "tags", "text"), rest_field="text")
        except ActionError as exc:
            raise ActionError(f"{exc} {EDIT_HELP}") from None
        return self._checked({**action.model_dump(exclude={"kind"}), **changes})

    def outcome_line(self, when: str, executed: Executed) -> str:
        return f"Published {when}. {executed.detail}"

    def secrets(self) -> Sequence[str]:
        return [d.secret.get_secret_value() for d in self._destinations.values()]

    async def execute(self, action: PostAction, idempotency_key: str, progress: Progress | None = None) -> Executed:
        destination = self._destinations.get(action.destination)
        if destination is None:
            raise PermanentError(f"destination {action.destination!r} is no longer configured")
        body = json.dumps(
            {"title": action.title, "text": action.text, "tags": list(action.tags), "idempotency_key": idempotency_key},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key,
            SIGNATURE_HEADER: "sha256=" + sign(destination.secret.get_secret_value(), body),
        }
        try:
            async with httpx.AsyncClient(follow_redirects=False, timeout=self._settings.timeout_s) as client:
                response = await client.post(destination.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TemporaryError(f"{action.destination} unreachable ({type(exc).__name__})") from None
        if failed := http_outcome(response.status_code, action.destination, response.text[:200], "the post"):
            raise failed
        where = _location(response)
        return Executed(
            external_id=where or idempotency_key, detail=f"to {action.destination}" + (f": {where}" if where else "")
        )

    async def check(self) -> tuple[bool | None, str]:
        if not self.configured:
            return None, "not configured; set COO_PUBLISH__WEBHOOK_URL and COO_PUBLISH__WEBHOOK_SECRET"
        # Nothing is sent: a request to a publishing webhook could publish something.
        return True, "destinations: " + ", ".join(sorted(self._destinations))


def sign(secret: str, body: bytes) -> str:
    """HMAC-SHA256 of the raw body, hex."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _location(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        return str(data.get("url") or data.get("id") or "")[:300]
    return ""


def connector(settings: PublishSettings, deps: Deps) -> list[ActionKind[Any]]:
    """The kinds this connector declares."""
    return [PublishPost(settings)]


CONNECTOR = ConnectorSpec("publish", PublishSettings, connector)
