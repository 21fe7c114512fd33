"""Code the bootyard services share: settings, the Redis inventory, events, metrics, runtime."""
