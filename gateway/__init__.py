"""Gateway concerns in front of the service: API keys, rate limits, request ids, size
limits, JSON logs and metrics."""
