"""geopeft.peft."""
