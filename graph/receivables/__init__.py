"""Receivables: reminder cards for open invoices on a cadence, settled by Stripe's events."""
