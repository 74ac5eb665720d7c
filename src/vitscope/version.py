"""vitscope's version: one constant at the ground floor, so that results files can record it without
importing the package's face (``pyproject.toml`` reads it from here too)."""

__version__ = "0.1.0"
