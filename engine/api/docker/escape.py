"""Detach keys (`ctrl-p,ctrl-q` by default): the byte sequence on an attached stdin that
leaves the container running and ends the attach, as Docker's escape proxy does.

I/O: none. `parse_detach_keys` reads Docker's notation; `EscapeScanner` is fed stdin chunks
and says what to pass on to the container and whether the sequence was typed. A partial
match that then differs is passed on whole, so no keystroke is lost.
"""

from __future__ import annotations

from engine.core.errors import InvalidArgument

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(spec: str) -> bytes:
    """moby `term.ToBytes`: comma-separated single characters or `ctrl-<key>` where key is
    a letter or one of `@[\\]^_`."""
    out = bytearray()
    for key in spec.split(","):
        key = key.strip()
        if len(key) == 1:
            out.append(ord(key))
            continue
        low = key.lower()
        if low.startswith("ctrl-") and len(key) == 6:
            ch = key[5].lower()
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
                continue
            if ch in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[ch])
                continue
        raise InvalidArgument(f"invalid detach keys {spec!r}: {key!r} is not a key",
                              hint="use ctrl-<a-z,@,[,\\,],^,_> or single characters, "
                                   "comma-separated, e.g. ctrl-p,ctrl-q")
    if not out:
        raise InvalidArgument("invalid detach keys: empty", hint="e.g. ctrl-p,ctrl-q")
    return bytes(out)


class EscapeScanner:
    """Finds `keys` in a stream of chunks (they may be split across chunks)."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.matched = 0  # how many bytes of `keys` the stream ends with, held back

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to pass on, True when the whole sequence was typed). After a detach the
        rest of `data` is dropped: the user asked to leave."""
        out = bytearray()
        keys = self.keys
        for byte in data:
            if byte == keys[self.matched]:
                self.matched += 1
                if self.matched == len(keys):
                    self.matched = 0
                    return bytes(out), True
                continue
            # A partial match that turned out to be typing: pass on what cannot start the
            # sequence any more, keep the longest tail that still can.
            held = keys[:self.matched] + bytes((byte,))
            start = next(i for i in range(1, len(held) + 1) if keys.startswith(held[i:]))
            out += held[:start]
            self.matched = len(held) - start
        return bytes(out), False
