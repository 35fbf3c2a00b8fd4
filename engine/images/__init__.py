"""Images on disk, above the drivers.

- `reference`: Docker's reference grammar, strict, pure (`parse_reference`, `validate_digest`).
- `documents`: OCI/Docker JSON documents decoded into typed structs, image-config mapping and
  validation, pure (`parse_image_config`, `build_image_config`).
- `archive`: `docker load` / `save` / `import` against the content store (tar files, I/O).

The drivers underneath: `engine/drivers/content.py` (blobs by digest), `layers.py` +
`tarsafe.py` (confined unpack), `snapshots.py` + `mountsys.py` (overlay rootfs mounts).
"""
