"""The REST API: authentication, vehicles and diagnostic commands."""
