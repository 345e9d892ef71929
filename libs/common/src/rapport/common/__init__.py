"""Rapport's shared library: what more than one service needs lives here and only here."""
