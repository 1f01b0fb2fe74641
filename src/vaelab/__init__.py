"""vaelab: a reproducible pipeline for studying blur in autoencoders and VAEs."""

__version__ = "0.1.0"
