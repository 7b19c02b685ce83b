"""The sinks wing: where the daemon's messages go."""
