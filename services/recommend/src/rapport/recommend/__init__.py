"""Rapport recommend: item ranking and message understanding on Triton."""
