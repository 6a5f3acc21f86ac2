"""geopeft.datasets."""
