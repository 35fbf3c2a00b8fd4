"""Volumes and mounts: pure planning (`plan`) and copying an image's content into a new
volume (`seed`). The kernel side lives in `engine/drivers/volumes.py` and `bindsafe.py`."""
