"""python -m shmring.bench: the same as `python -m shmring bench`."""
import argparse
import sys

import shmring.bench
from shmring.bench import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m shmring.bench", description=shmring.bench.__doc__)
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":             # not when a tool imports every submodule
    sys.exit(main())
