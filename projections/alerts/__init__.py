"""Churn alerts: ``rules`` decides, without I/O, which conditions hold for a customer."""
