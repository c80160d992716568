"""The API server's routes."""
