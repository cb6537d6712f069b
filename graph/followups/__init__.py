"""Follow-ups: promised and automatic ones, proposed once each when due (an email card or a reminder)."""
