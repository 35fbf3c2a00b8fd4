"""The container runtime's pure parts: OCI spec builder, seccomp translation, log reader.

I/O: none at import; `logs.py` reads log files.
"""
