"""The WebSocket API: queue operations, push workers and queue events over Autobahn."""
