"""geopeft: parameter-efficient fine-tuning of geospatial foundation models."""

__version__ = '0.1.0'
