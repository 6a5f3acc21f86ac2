"""geopeft.backbones."""
