"""The outside systems ingest talks to (Kafka is rapport.common.kafka's)."""
