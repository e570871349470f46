"""The package's version, in a module of its own: any room reads it without importing the SDK
surface (``fleetmind/__init__``), which imports every room."""

__version__ = "0.1.0"
