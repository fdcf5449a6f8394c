"""Remote operation: commands on ``{prefix}/{device}/cmd``, validated before anything changes."""
