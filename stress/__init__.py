"""The shmring memory-model test lab: python -m stress (see docs/lab.md)."""
