"""The spend charts (SVG drawn on the server): a bar per day and per workflow, caps drawn and named with the
currency, over-cap bars marked, and names from outside (workflow names) escaped."""

from __future__ import annotations

from bot.web.chart import day_bars, workflow_bars


def test_a_bar_per_day_with_the_daily_cap_and_its_currency() -> None:
    days = [(f"2026-03-0{n}", float(n)) for n in range(1, 8)]
    svg = day_bars(days, 5.0, "EUR")
    assert svg.count('class="bar"') == 7 and "cap 5.00 EUR a day" in svg
    assert "<title>2026-03-07: 7.00 EUR</title>" in svg
    assert "highest 7.00 EUR" in svg  # the tallest bar is over the cap: the scale says so


def test_no_spend_and_no_cap_still_draws_an_empty_chart() -> None:
    svg = day_bars([], None, "USD")
    assert svg.startswith("<svg") and svg.endswith("</svg>") and 'class="cap"' not in svg
    assert "highest 0.01 USD" in svg  # never a division by zero


def test_workflows_over_their_cap_are_marked_and_names_are_escaped() -> None:
    svg = workflow_bars([("chat", 2.0, 5.0), ("<script>x</script>", 3.0, 1.0), ("goal", 0.001, None)], "EUR")
    assert svg.count('class="bar"') == 2 and svg.count('class="bar over"') == 1
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "2.00 EUR of 5.00 EUR" in svg and "0.0010 EUR" in svg
