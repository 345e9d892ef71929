"""Rapport respond: the chatbot-facing, OpenAI-compatible gateway."""
