"""Code shared by the api, workers and realtime processes."""
