"""The web page at /ui: static files served by the Bento itself (web/app.py)."""
