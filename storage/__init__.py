"""The base layer's storage: the one object store for a local folder or S3
(object_store.py, with the S3 client and its error mapping in s3.py) and the one way to
open Redis (redis_connections.py). Imports nothing of the project but core/."""
