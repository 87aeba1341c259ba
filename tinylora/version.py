"""The package version (pyproject.toml says the same), in a module of its own so that modules
the package's ``__init__`` imports can name it without an import cycle."""
__version__ = "0.1.0"
