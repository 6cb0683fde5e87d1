"""Builtin sources: each module is a plugin."""
