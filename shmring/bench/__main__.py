"""python -m shmring.bench: the same as `python -m shmring bench`."""
import argparse
import sys

import shmring.bench
from shmring.bench import add_arguments, run

parser = argparse.ArgumentParser(prog="python -m shmring.bench", description=shmring.bench.__doc__)
add_arguments(parser)
sys.exit(run(parser.parse_args()))
