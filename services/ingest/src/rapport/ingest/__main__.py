"""``python -m rapport.ingest``: the same as the ``rapport-ingest`` console script."""

from rapport.ingest.app import main

if __name__ == "__main__":
    main()
