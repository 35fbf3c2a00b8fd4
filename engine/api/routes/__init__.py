"""One module per group of API endpoints.

Rule: calls the shell, never a driver; translates with engine/api/docker.
"""
