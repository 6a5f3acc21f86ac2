"""geopeft.datamodules."""
