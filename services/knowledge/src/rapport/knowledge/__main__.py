"""``python -m rapport.knowledge``: the same as the ``rapport-knowledge`` console script."""

from rapport.knowledge.app import main

if __name__ == "__main__":
    main()
