"""What a host's replicator decides, given what the center holds and what the local log holds.

I/O: none (pure). The shell (engine/shell/replication.py) asks the center for this host's head
and last hash, asks the local log for its own hash at that seq, and acts on the verdict here:
resume after the center's head, or stop because the two chains have parted (a fork), or because
the local log no longer holds the events the center still needs (compaction ran past them).
Nothing here ever skips an event: a verdict either resumes exactly after the center's head or
stops.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Resume", "Stop", "after_refusal", "check_batch", "resume_point"]


class Resume(NamedTuple):
    """Ship the local events after `after_seq` (the center already holds 1..after_seq)."""

    after_seq: int


class Stop(NamedTuple):
    """Replication cannot go on without losing or rewriting history: record `kind`/`detail`."""

    kind: str  # "fork", "gap"
    detail: str


def resume_point(center_head: int, center_hash: str, local_head: int,
                 local_hash_at_center_head: str | None) -> Resume | Stop:
    """Where to resume, from the center's head and the local log's hash at that seq."""
    if center_head == 0:
        return Resume(0)
    if center_head > local_head:
        return Stop("fork", f"the center holds {center_head} events of this host, the local log "
                            f"only {local_head}: the local log was replaced or rolled back")
    if local_hash_at_center_head is None:
        return Stop("gap", f"the local log no longer holds event {center_head} (compacted?), "
                           "so its link to the center's chain cannot be checked")
    if local_hash_at_center_head != center_hash:
        return Stop("fork", f"event {center_head}: the center holds hash {center_hash[:16]}…, "
                            f"the local log {local_hash_at_center_head[:16]}…: the chains differ")
    return Resume(center_head)


def check_batch(after_seq: int, seqs: list[int]) -> int | Stop:
    """How many of a batch read from the local log can be shipped: the run that starts right
    after the acknowledged seq with no hole. A hole means compaction removed events that were
    never shipped: the run before it still goes; at the hole itself replication stops."""
    expect = after_seq + 1
    for count, seq in enumerate(seqs):
        if seq != expect:
            if count:
                return count
            return Stop("gap", f"the local log has no event {expect} (compacted before it "
                               "was replicated); refusing to skip it")
        expect += 1
    return len(seqs)


def after_refusal(acked: int, first_seq: int, last_seq: int, again: Resume | Stop,
                  message: str) -> Resume | Stop:
    """The center refused batch first_seq..last_seq sent after `acked`; `again` is
    `resume_point` asked anew. If the center's head moved past `acked` along our own chain (it
    already holds these events with the same hashes: a resent batch after a lost COMMIT reply,
    or a second sender), the batch was a duplicate and shipping resumes there. If it did not
    move, the center refused our next link: a fork, never retried or skipped."""
    if isinstance(again, Stop):
        return again
    if again.after_seq > acked:
        return again
    return Stop("fork", f"the center refused events {first_seq}..{last_seq}: {message}")
