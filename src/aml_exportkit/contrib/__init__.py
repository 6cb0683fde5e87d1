"""Integrations with other software; each needs its optional dependency (``django``)."""
