"""Model engines: the Embedder and Generator BentoML services, and where their weights live."""
