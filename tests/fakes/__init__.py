"""Stand-ins for hardware that tests cannot rely on (an Edge TPU runtime)."""
