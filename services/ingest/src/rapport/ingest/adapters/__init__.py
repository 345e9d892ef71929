"""One module per outside system: Kafka (log, the event log) and Redis (dedup: rate limits
and idempotency keys)."""
