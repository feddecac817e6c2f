"""``sovd``: the command-line client of the diagnostics service."""
