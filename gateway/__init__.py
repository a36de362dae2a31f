"""Gateway concerns in front of the service: API keys, rate limits, request ids, size
limits, the scope of collections, S3 sources and tasks, JSON logs and metrics."""
