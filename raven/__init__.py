"""raven-pipeline: a reproduction of RAVEN and CM-GRPO (see README.md)."""

__version__ = "0.1.0"
