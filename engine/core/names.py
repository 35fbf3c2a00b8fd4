"""Docker-style generated container names ("quirky_turing").

I/O: none; the caller passes the random choices in, so tests are deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

ADJECTIVES = (
    "admiring", "agitated", "amazing", "angry", "awesome", "blissful", "bold", "brave",
    "busy", "charming", "clever", "cool", "dazzling", "determined", "eager", "ecstatic",
    "elegant", "epic", "focused", "friendly", "gallant", "gifted", "happy", "hopeful",
    "jolly", "keen", "kind", "laughing", "loving", "lucid", "modest", "nice", "nifty",
    "optimistic", "peaceful", "pensive", "quirky", "relaxed", "serene", "sharp", "stoic",
    "sweet", "tender", "trusting", "upbeat", "vibrant", "wizardly", "youthful", "zealous",
)
SURNAMES = (
    "agnesi", "archimedes", "babbage", "bell", "blackwell", "bohr", "curie", "darwin",
    "dijkstra", "einstein", "euclid", "euler", "fermat", "feynman", "franklin", "galileo",
    "gauss", "goldberg", "hamilton", "hopper", "hypatia", "johnson", "kepler", "knuth",
    "lamarr", "lamport", "liskov", "lovelace", "maxwell", "mccarthy", "meitner", "newton",
    "noether", "pascal", "perlman", "ritchie", "shannon", "sinoussi", "thompson", "torvalds",
    "turing", "wiles", "wing", "wozniak", "yalow",
)


def generate_name(choose: Callable[[Sequence[str]], str], taken: Callable[[str], bool]) -> str:
    for _ in range(32):
        name = f"{choose(ADJECTIVES)}_{choose(SURNAMES)}"
        if not taken(name):
            return name
    n = 2
    while taken(f"{name}{n}"):
        n += 1
    return f"{name}{n}"
