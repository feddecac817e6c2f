"""The realtime relay: WebSocket clients, one Redis subscription per process."""
