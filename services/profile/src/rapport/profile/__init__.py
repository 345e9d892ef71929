"""Rapport profile: real-time profile state derived from the event stream."""
