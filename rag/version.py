"""The package version, in one place (the package and the index manifest read it)."""
__version__ = "0.1.0"
