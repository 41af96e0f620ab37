"""``python -m kubetasks``: the same as the ``kubetasks`` command."""

from kubetasks.cli import main

if __name__ == "__main__":
    main()
