"""geopeft.tasks."""
