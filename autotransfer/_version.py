"""The package version, in a leaf module (the plugin manager reads it too)."""

__version__ = "0.1.0"
