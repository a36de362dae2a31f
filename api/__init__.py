"""ASGI apps mounted on the RAG service: translations to and from its core APIs, never
touching storage directly (the OpenAI-compatible /v1: api/openai_api.py)."""
