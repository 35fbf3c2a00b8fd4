"""Where things live on disk, built only from validated ids (RELIABILITY I-02, S-03).

I/O: `ensure()` creates the directories with their modes; everything else only joins paths.

    ROOT (/var/lib/shipslog, 0700)   events.db, blobs/, layers/, containers/ID/, volumes/,
                                     secrets/, engine.lock
    EXEC_ROOT (/run/shipslog, 0700)  shipslog.sock, runc/, containers/ID/ (monitor files),
                                     bundles/ID/ (OCI bundles), boot-id
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.core.validate import check_id


@dataclass(frozen=True)
class Paths:
    root: Path
    exec_root: Path

    @classmethod
    def of(cls, root: str | os.PathLike[str], exec_root: str | os.PathLike[str]) -> Paths:
        return cls(Path(root).absolute(), Path(exec_root).absolute())

    def ensure(self) -> None:
        for d in (self.root, self.exec_root):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        for d in (self.containers_root, self.exec_root / "bundles", self.root / "tmp"):
            d.mkdir(parents=True, exist_ok=True)

    @property
    def db(self) -> Path:
        return self.root / "events.db"

    @property
    def lock(self) -> Path:
        return self.root / "engine.lock"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def containers_root(self) -> Path:
        return self.root / "containers"

    @property
    def clean_shutdown_marker(self) -> Path:
        return self.root / "clean-shutdown"

    @property
    def boot_id_file(self) -> Path:
        return self.exec_root / "boot-id"

    def container_dir(self, container_id: str) -> Path:
        return self.containers_root / check_id(container_id)

    def log_path(self, container_id: str) -> Path:
        return self.container_dir(container_id) / f"{container_id}-json.log"

    def bundle_dir(self, container_id: str) -> Path:
        return self.exec_root / "bundles" / check_id(container_id)
