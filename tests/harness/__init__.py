"""Test harness: a real redis-server, and a private network lab in namespaces."""
