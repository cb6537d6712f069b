"""Spend charts as SVG, drawn on the server (no script, no external asset)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from prompts.messages import money

W, H, PAD = 640, 220, 36


def day_bars(days: Sequence[tuple[str, float]], cap: float | None, currency: str) -> str:
    """One bar per day (label, amount), with the daily cap as a dashed line when one is set."""
    top = max([v for _, v in days] + [cap or 0.0, 0.01])
    inner_w, inner_h = W - 2 * PAD, H - 2 * PAD
    step = inner_w / max(len(days), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="Spend per day" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" class="axis"/>',
    ]
    for i, (label, value) in enumerate(days):
        bar_h = inner_h * value / top
        x = PAD + i * step + step * 0.15
        parts.append(
            f'<rect x="{x:.1f}" y="{H - PAD - bar_h:.1f}" width="{step * 0.7:.1f}" height="{bar_h:.1f}" class="bar">'
            f"<title>{escape(label)}: {escape(money(value, currency))}</title></rect>"
        )
        if i % max(1, len(days) // 7) == 0:
            parts.append(f'<text x="{x:.1f}" y="{H - PAD + 14}" class="label">{escape(label[5:])}</text>')
    if cap:
        y = H - PAD - inner_h * cap / top
        parts.append(f'<line x1="{PAD}" y1="{y:.1f}" x2="{W - PAD}" y2="{y:.1f}" class="cap"/>')
        parts.append(
            f'<text x="{W - PAD}" y="{y - 4:.1f}" text-anchor="end" class="label">'
            f"cap {escape(money(cap, currency))} a day</text>"
        )
    if not cap or top > cap:
        parts.append(f'<text x="{PAD}" y="14" class="label">highest {escape(money(top, currency))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def workflow_bars(rows: Sequence[tuple[str, float, float | None]], currency: str) -> str:
    """One horizontal bar per workflow (name, spent, cap or None); a cap is the bar's full width."""
    row_h = 28
    height = max(len(rows), 1) * row_h + 10
    top = max([max(v, c or 0.0) for _, v, c in rows] + [0.01])
    label_w, inner_w = 150, W - 150 - PAD - 110
    parts = [
        f'<svg class="chart" viewBox="0 0 {W} {height}" role="img" aria-label="Spend per workflow" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (name, spent, cap) in enumerate(rows):
        y = 5 + i * row_h
        width = inner_w * spent / top
        parts.append(f'<text x="0" y="{y + 16}" class="label">{escape(name[:22])}</text>')
        if cap:
            parts.append(
                f'<rect x="{label_w}" y="{y + 4}" width="{inner_w * cap / top:.1f}" height="16" class="capbox"/>'
            )
        over = " over" if cap is not None and spent > cap else ""
        parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{width:.1f}" height="16" class="bar{over}"/>')
        shown = money(spent, currency) + (f" of {money(cap, currency)}" if cap else "")
        parts.append(f'<text x="{label_w + inner_w + 8}" y="{y + 16}" class="label">{escape(shown)}</text>')
    parts.append("</svg>")
    return "".join(parts)
