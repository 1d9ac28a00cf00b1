"""The package's version, in a module of its own: what every generated file records, read without importing
the package (and everything its ``__init__`` imports)."""

__version__ = "0.1.0"
