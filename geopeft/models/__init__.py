"""geopeft.models."""
