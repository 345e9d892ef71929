"""Rapport knowledge: company documents, indexed from the stream, searched per tenant."""
