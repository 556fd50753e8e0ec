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

__all__ = ["article", "referring_phrases"]

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


def referring_phrases(text: str) -> list[str]:
    """The noun phrases of `text` that start with a determiner, in order, each as "a ..." /
    "an ..." (the form of the backbone's dense labels); [] when there is none."""
    phrases: list[list[str]] = []
    current: list[str] | None = None
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in DETERMINERS:
            if current:
                phrases.append(current)
            current = []
        elif current is not None:
            if word in BOUNDARIES:
                if current:
                    phrases.append(current)
                current = None
            else:
                current.append(word)
    if current:
        phrases.append(current)
    return [f"{article(p[0])} {' '.join(p)}" for p in phrases]
