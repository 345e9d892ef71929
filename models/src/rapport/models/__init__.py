"""Rapport's training pipeline: item scorer and message understanding for Triton."""
