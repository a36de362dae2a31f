"""The base layer's shared definitions: the closed set of domain errors (errors.py), the
settings' value types (keys.py, rate_limits.py, s3_sources.py). It imports nothing of the
project, and every layer may import it."""
