"""User-facing strings, in one place (every layer imports them from here; prompts are the .txt files)."""

from __future__ import annotations

REFUSAL = "Sorry, I only work for my operator."
GENERIC_ERROR = "Something went wrong on my side; it has been logged. Please try again."
PAIRED = "Paired. You are now my operator. Try /help."
PAIR_FAILED = "That code is not valid. {left} tries left; further wrong codes get no reply for an hour."
PAIR_CLOSED = "Pairing is closed. An operator can open it with `coo pair` on the machine I run on."
PAIR_LOCKED = "Too many wrong codes. Ask the operator for a new one later."
NEW_OPERATOR = (
    "{identity} paired as a new operator (code opened by {opened_by}). "
    "If that was not you, run `coo operators remove {identity}`."
)
PAIRING_REOPENED = (
    "Pairing was opened from the command line: a one-time code valid {minutes} min was printed there. "
    "If that was not you, check who has access to the machine."
)
ANSWERED_PRIVATELY = "I answered that in our private chat."
NEEDS_PRIVATE_CHAT = "I answer that only in a private chat: write to me directly once, then ask again."
TOO_LONG_TO_READ = (
    "That message has {chars:,} characters; I read at most {limit:,}. Please send it shorter or in parts."
)
TOO_LONG_FOR_MODEL = (
    "That message is about {tokens:,} tokens; the model's budget takes about {limit:,} in one message "
    "(COO_LLM__CONTEXT_BUDGET). Please send it shorter or in parts."
)
POLICY_USAGE = "Usage: /policy | /policy risk <cautious|balanced|relaxed>"
POLICY_SHOW = (
    "Approval policy:\n- risk tolerance: {risk} ({source})\n- forbidden actions: {forbidden}\n"
    "- cards expire after {ttl:g} h\ncautious and balanced: every outward action needs your tap. relaxed: email to "
    "addresses already emailed goes out without a card."
)
POLICY_CONFIRM = (
    "Loosen the approval policy from {current} to {new}?\nUnder {new}, email to addresses you already emailed "
    "goes out without a card. Confirm within {minutes} min."
)
POLICY_TIGHTENED = "Risk tolerance is now {new}; it is in force now."
POLICY_UNCHANGED = "Risk tolerance is already {new}."
POLICY_LOOSENED = "Risk tolerance is now {new} (confirmed by {who})."
POLICY_KEPT = "Kept risk tolerance {current}; nothing changed."
POLICY_STALE = "That confirmation is no longer valid; nothing changed."
MEMORY_UNAVAILABLE = (
    "{what} is not searchable right now: the memory index failed ({reason}). I started rebuilding it from "
    "what is stored; try again in a minute."
)
BUDGET_ONCE = (
    "OK: one more {workflow} model call is allowed over the cap, until the end of this {period}. Unused by then, "
    "it lapses, and the next call over the cap asks you again."
)
MEMORY_BUDGET_KEPT = (
    "Kept as {ref}. It becomes searchable once the budget allows embedding it (the embeddings are paid and "
    "count as the memory workflow: /budget)."
)
MEMORY_EMBEDDER_KEPT = (
    "Kept as {ref}. The embedding service is not answering now, so it becomes searchable once it is back "
    "(I keep trying)."
)
MEMORY_BUDGET_RECALL = (
    "Memory search needs a paid embedding, and the budget refuses it now (the memory workflow or all work is "
    "at its cap: /budget)."
)
MESSAGE_FORGOTTEN = (
    "Forgotten: {ref}. Its text is gone from memory search, the message log and exports. Not changed: the "
    "conversation history the model still reads in that chat (and its running summary of older turns), and "
    "any reply of mine that repeated it."
)
PROFILE_RISK_MOVED = "Risk tolerance is part of the approval policy now: /policy risk <cautious|balanced|relaxed>."
GOAL_NEEDS_MODEL = (
    "Goal {goal_id} is recorded. Planning it needs a model, and none answers now: configure COO_LLM__BASE_URL "
    "(or COO_LLM__API_KEY), then send /goal plan {goal_id}."
)
TASK_BLOCKED = "Task {task} of goal {goal_id} is blocked: {reason}"
TASK_NEEDS_OPERATOR = "it needs you: {question}"
TASK_RESTARTED_TOO_OFTEN = (
    "it proposed and waited for your decision {count} times (rejections included) without finishing; "
    "look at its cards, then Retry or Skip"
)
GOAL_NOT_VERIFIED = (
    "Goal {goal_id}: its tasks ended, but I could not verify that it is met. Please check it yourself: "
    "{criteria}\n{report}"
)
GOAL_DONE = "Goal {goal_id} is done.\n{report}"
GOAL_NOT_MET = "Goal {goal_id}: the criteria are not met yet.\n{report}"
GOAL_CANCELLED = "Goal {goal_id} is cancelled; its open tasks and cards were stopped."
GOAL_NOT_PLANNABLE = "Goal {goal_id} is {status}: /goal plan is for a goal still waiting for a plan that can run."
GOAL_PLAN_NOT_APPROVED = "Goal {goal_id} ended: its plan was not approved."
GOAL_FOLLOW_UP_NOT_APPROVED = "Goal {goal_id} ended: its follow-up plan was not approved; its last report stands."
GOALS_USAGE = "Usage: /goal <what you want done> | /goal <id> | /goal cancel <id> | /goal plan <id> | /goals"

EDITED_COMMAND = (
    "I don't run a command again because its message was edited: what it did stands. "
    "Send the corrected command as a new message if you want it run."
)
MCP_NONE = "No tool servers are configured. Add them with COO_MCP__SERVERS (see docs/mcp.md)."
MCP_USAGE = "Usage: /mcp | /mcp trust <server>.<tool>"
MCP_SERVER_LINE = "{server} ({transport}): {state}{detail}"
MCP_TOOL_LINE = "  - {tool}: {cls} ({why})"
MCP_LEGEND = (
    "A read runs when the assistant asks for it; every write waits for your approval on a card. "
    "To let a tool run as a read: /mcp trust <server>.<tool>."
)
MCP_TRUST_CONFIRM = (
    "Trust {tool} as read-only? It will run without a card whenever the assistant asks, until its server "
    "changes how it describes it. Its server describes it as: {description}\n"
    "Confirm within {minutes} min."
)
MCP_TRUSTED = "{tool} now runs as a read (trusted by {who})."
MCP_TRUST_KEPT = "Kept: {tool} stays a write."
MCP_TRUST_STALE = "That confirmation has expired; nothing changed."

# The model's price and its fallbacks (graph/models/notices.py, bot/doctor.py, /spend); docs/models.md says more.
UNPRICED_MODEL = (
    "Note: {model} has no known price, so I count it at {input}/{output} {currency} per million tokens "
    "(input/output) against your budgets. If it runs on your own hardware, set COO_LLM__FREE=true "
    '(for a fallback: "free": true in COO_LLM__FALLBACKS); or give its price: '
    "COO_LLM__PRICES='{{\"{model}\": [0.5, 1.5]}}'. Then restart me."
)
FALLBACK_SKIPPED = (
    "I skipped the fallback model {model} ({label}): one call may cost up to {estimate}, and the {period} "
    "budget has {left} left. /budget to change it."
)
PRICE_IN_USE = "{model} ({label}): {input}/{output} {currency} per million tokens in/out, {source}"
PRICE_SOURCES = {
    "COO_LLM__PRICES": "your price (COO_LLM__PRICES)",
    "COO_LLM__FREE": 'free by your word (COO_LLM__FREE or the fallback\'s "free")',
    "genai-prices": "the published price",
    "unknown model, priced high": "no known price, so counted high: set COO_LLM__FREE=true or COO_LLM__PRICES",
}
OFFLINE_RELATED = "Related things you told me:"
OFFLINE_NOTHING_RELATED = "Nothing in memory matches that yet."


WEB_LINK = (
    "Your web console: {url}\nThe link works once, for 10 minutes, and only for you. "
    "Open it on the device you want to use."
)
WEB_OFF = "The web console is off (COO_WEB__LISTEN is empty)."
WEB_PRIVATE_ONLY = "Ask for /web in your private chat with me: the link is a key to everything."

def money(amount: float, currency: str) -> str:
    """Spend, budgets and prices as the operator sees them, in one format and always with the currency:
    ``1,234.50 USD``; an amount that would round to 0.00 keeps four decimals (``0.0009 USD``), so small
    model spend never reads as nothing."""
    return f"{amount:,.4f} {currency}" if 0 < amount < 0.005 else f"{amount:,.2f} {currency}"


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 task``, ``2 tasks``; ``many`` for an irregular plural."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


NOT_RESENDABLE = (
    "This action cannot be resent from here: it was not approved on this install (it came from a backup "
    "made elsewhere). If it did not happen, ask for it again and approve the new card."
)
PROFILE_RESTORE_WAITING = (
    "Restored from a backup, not in effect until you confirm it (a backup file is not your word):\n{fields}\n"
    "Send /profile restore to use it, or /profile restore drop to discard it."
)
PROFILE_RESTORE_NONE = "No restored profile is waiting."
PROFILE_RESTORE_DROPPED = "The restored profile was discarded; your profile is unchanged."

# The inbox (/inbox).
INBOX_NOT_CONFIGURED = (
    "Inbox reading is off. Set COO_IMAP__HOST, COO_IMAP__USERNAME and COO_IMAP__PASSWORD (see docs/inbox.md)."
)
INBOX_EMPTY = "Inbox: nothing needs you."
INBOX_UNKNOWN = "No such message. /inbox lists the ones that need you."
INBOX_USAGE = "Usage: /inbox, /inbox <id>, or /inbox reply <id> | <your reply> (without text the model drafts it)."
INBOX_REPLY_TO_DIFFERS = (
    "Note: {sender} asked for replies to go to {reply_to}. The card sends to {sender}, the sender; "
    "to use the other address, edit the card with to={reply_to}."
)
INBOX_NO_DRAFT = "The model could not draft a reply just now. Write it yourself: /inbox reply {id} | <your reply>"
INBOX_URGENT = "Urgent email from {sender}: {subject}\n{summary}\nOpen it with /inbox {id}."

# Receivables (graph/receivables, bot/receivables.py): payments seen, reminders withdrawn, the digest's part.
PAID_NOTICE = "{customer} paid {number}: {amount}"
PAYMENT_FAILED_NOTICE = "A payment for {number} ({customer}) failed: {amount} is still due."
VOIDED_NOTICE = "{number} ({customer}) was voided at Stripe: nothing is owed on it any more."
UNCOLLECTIBLE_NOTICE = "{number} ({customer}) was marked uncollectible at Stripe."
REFUND_NOTICE = "A payment of {customer} was refunded: {amount}."
REMINDER_WITHDRAWN = "Withdrawn: {reason}. Nothing was sent."
REMINDER_REPLACED = "Replaced by the next reminder for this invoice (approval {approval_id}). Nothing was sent."
RECEIVABLES_HEAD = "Receivables (open invoices by days overdue):"
RECEIVABLES_BUCKETS = ("current", "1–30 days", "31–60 days", "over 60 days")
REMINDERS_WAITING = "Payment reminders waiting for your approval: {count}"
PROMPT_CUT = (
    "Note: {model} read only about {counted} tokens of a prompt of about {estimate}: its endpoint seems to cut "
    "prompts to its context window, so the model misses part of what I send. With Ollama, raise the context "
    "length (OLLAMA_CONTEXT_LENGTH=16384, or num_ctx in a Modelfile); see docs/local-models.md."
)
