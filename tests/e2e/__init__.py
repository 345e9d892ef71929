# A package, so that conftest.py's package-scoped mesh stops after this tier's last test
# (a plain directory's package scope lasts the whole session).
