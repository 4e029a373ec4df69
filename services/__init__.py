"""Touchstream runtime and doors: gateway, processors, API, SDK, CLI."""
