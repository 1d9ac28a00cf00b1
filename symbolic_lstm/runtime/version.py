"""The package's version, in a module of its own: what every generated file records, read without importing
anything else of the package (setup.cfg reads it statically)."""

__version__ = "0.1.0"
