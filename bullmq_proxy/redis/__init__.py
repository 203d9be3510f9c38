"""Redis connections: the clients the proxy talks through, and the embedded server."""
