"""``python -m rapport.recommend``: the same as the ``rapport-recommend`` console script."""

from rapport.recommend.app import main

if __name__ == "__main__":
    main()
