"""The HTTP/1.1 server on trio + h11: routing, streams, hijack, admission, peer credentials.

Rule: knows HTTP, not containers; imports no route module.
"""
