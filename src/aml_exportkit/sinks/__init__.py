"""Builtin sinks: each module is a plugin."""
