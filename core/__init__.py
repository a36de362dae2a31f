"""The base layer's shared definitions: the closed set of domain errors (errors.py). It
imports nothing of the project, and every layer may import it."""
