"""``python -m rapport.profile``: the same as the ``rapport-profile`` console script."""

from rapport.profile.app import main

if __name__ == "__main__":
    main()
