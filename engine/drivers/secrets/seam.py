"""The secret seam: environment values kept out of the log (DESIGN "Secrets").

I/O: none here. The Linux implementation is `store.SecretStore` (0600 files, wipeable),
which satisfies `Secrets` itself; the recording fake is `FakeSecrets` in
`engine/testing/fakes.py`; the contract is `tests/contracts/test_seam_contracts.py`.
"""

from __future__ import annotations

from typing import Protocol


class Secrets(Protocol):
    def key(self) -> bytes: ...

    def put(self, owner: str, env: list[str]) -> None: ...

    def get(self, owner: str) -> list[str]: ...

    def wipe(self, owner: str) -> bool: ...
