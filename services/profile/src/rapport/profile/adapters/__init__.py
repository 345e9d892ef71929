"""The outside systems profile talks to: MongoDB and Redis (store), Kafka (processor)."""
