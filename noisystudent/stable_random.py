"""Randomness that is a pure function of (seed, key parts).

Every random decision in a pipeline (sampling, keep/duplicate, shard
assignment) goes through here, so a retried bundle or a re-run gives the same
output. Never use np.random or random in a DoFn.
"""

from __future__ import annotations

import hashlib

_DENOMINATOR = float(1 << 64)


def stable_hash64(seed: int, *parts: object) -> int:
    """A 64-bit hash of (seed, parts) that is the same on every machine and run."""
    text = "\x1f".join([str(int(seed))] + [str(p) for p in parts])
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def stable_uniform(seed: int, *parts: object) -> float:
    """A number in [0, 1) drawn deterministically from (seed, parts)."""
    return stable_hash64(seed, *parts) / _DENOMINATOR
