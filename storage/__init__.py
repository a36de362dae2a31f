"""The base layer's storage helpers: connections every other layer may use. Imports nothing
of the project."""
