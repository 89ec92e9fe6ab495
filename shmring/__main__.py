import sys

from shmring.cli import main

if __name__ == "__main__":             # not when a tool imports every submodule
    sys.exit(main())
