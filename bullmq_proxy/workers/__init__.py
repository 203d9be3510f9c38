"""HTTP-endpoint workers: a registry in Redis and one BullMQ worker per registered queue."""
