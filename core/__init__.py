"""The base layer's shared definitions: the closed set of domain errors (errors.py), the
settings' value types (keys.py, rate_limits.py, s3_sources.py), the records the index
hands to every layer (records.py) and what a collection may be called (collection_names.py).
It imports nothing of the project, and every layer may import it."""
