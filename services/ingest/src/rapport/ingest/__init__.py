"""Rapport ingest: the public event API into Kafka (``rapport.events.v1``)."""
