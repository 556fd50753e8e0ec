"""The things an instruction refers to, as phrases the backbone's patches can be asked about.

A CLIP embedding of a whole sentence ("push the red cube onto the blue square") is a poor query
over patch embeddings: the patches learned to answer short phrases for what they show ("a red
cube"). So the spatial readout asks with the instruction's referring expressions, cut at its
determiners and closed at the next preposition or conjunction: plain English chunking, no task
vocabulary. `referring_phrases("slide the purple box to the orange pad")` gives
["a purple box", "an orange pad"].
"""

from __future__ import annotations

import re

__all__ = ["article", "instruction_frame", "referring_phrases"]

DETERMINERS = frozenset({"the", "a", "an", "this", "that", "these", "those", "my", "your"})
# Words that end a noun phrase: prepositions, conjunctions and the like.
BOUNDARIES = frozenset({
    "onto", "on", "to", "into", "in", "inside", "from", "off", "with", "at", "by", "near",
    "beside", "next", "behind", "above", "below", "under", "over", "towards", "toward", "of",
    "and", "or", "then", "but", "so", "until", "before", "after", "while", "for", "up", "down",
    "away", "out", "please",
})


def article(word: str) -> str:
    """The indefinite article before `word` (by its first letter: enough for the colour and
    shape words here)."""
    return "an" if word[0] in "aeiou" else "a"


def _chunks(text: str) -> list[str | list[str]]:
    """The words of `text` (lower case), each determiner-led noun phrase as one list of its
    words (determiner dropped, closed at a boundary word or the next determiner)."""
    out: list[str | list[str]] = []
    current: list[str] | None = None
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in DETERMINERS:
            current = []
            out.append(current)
        elif current is not None and word not in BOUNDARIES:
            current.append(word)
        else:
            current = None
            out.append(word)
    return [c for c in out if c]


def referring_phrases(text: str) -> list[str]:
    """The noun phrases of `text` that start with a determiner, in order, each as "a ..." /
    "an ..." (the form of the backbone's dense labels); [] when there is none."""
    return [f"{article(c[0])} {' '.join(c)}" for c in _chunks(text) if isinstance(c, list)]


def instruction_frame(text: str) -> str:
    """What `text` says to do, without what to do it to: each referring phrase becomes
    "something" ("push the red cube onto the blue square" -> "push something onto
    something"). Embedded whole, the sentences of two tasks on the same object are nearly one
    vector (the nouns dominate); their frames differ only in what differs."""
    return " ".join(w if isinstance(w, str) else "something" for w in _chunks(text))
