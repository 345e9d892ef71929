"""Model code that runs inside Triton's Python backend (numpy only, Python 3.11).

Each module here is copied verbatim into the exported model version folder and
loaded from there by path, both by Triton's ``model.py`` and by
``rapport-models predict``, so offline predictions run the served code.
"""
