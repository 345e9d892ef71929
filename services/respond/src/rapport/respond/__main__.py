"""``python -m rapport.respond``: the same as the ``rapport-respond`` console script."""

from rapport.respond.cli import main

if __name__ == "__main__":
    main()
