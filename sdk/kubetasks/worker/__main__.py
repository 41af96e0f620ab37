"""``python -m kubetasks.worker``: the same as ``kubetasks worker``."""

from kubetasks.worker.runtime import main

if __name__ == "__main__":
    main()
