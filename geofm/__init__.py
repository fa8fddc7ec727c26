"""geofm: foundation models for multispectral and hyperspectral Earth observation."""

__version__ = "0.1.0.dev0"
