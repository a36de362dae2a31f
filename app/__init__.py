"""The application layer: what the service does, independent of how it is called.

service.py (BentoML), api/ (/v1) and the batch jobs call it; it composes retrieval/,
models/, experiments/ and jobs/ (ARCHITECTURE.md, "Layers").
"""
