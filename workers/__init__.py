"""Dramatiq actors that execute diagnostic commands against vehicles."""
