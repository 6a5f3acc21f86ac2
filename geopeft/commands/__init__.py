"""geopeft's own sub-commands (everything but the Lightning ones)."""
