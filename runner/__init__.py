"""GPU kernel challenge harness: loading challenges, grading solutions, timing them fairly."""

__version__ = "0.1.0"
