"""Shared sound concepts for the simulators: words of captions as directions.

In a real archive the same kinds of sound recur everywhere: "a man is talking" describes a
moment in hundreds of CASTELLA recordings. The simulators model that with one direction per
*concept*, a content word of the captions, and build each event (and each query) from the
concepts of its caption, so that events whose captions share words point in similar
directions wherever they occur.

How the concept words of a caption are chosen
---------------------------------------------
* the caption is lower-cased and split into runs of the letters a-z (so "man's" gives "man"
  and "s", "stir-fried" gives "stir" and "fried"); there is no stemming: "talks" and
  "talking" are two concepts;
* words of the built-in stop list :data:`STOP_WORDS` (articles, pronouns, prepositions,
  conjunctions, auxiliaries, counts and vague words such as "something" or "sounds") and words
  of fewer than :data:`MIN_WORD_LENGTH` letters are dropped;
* words held by fewer than ``min_count`` captions of the caption pool (the whole annotation
  files of a preset, or the synthetic captions) are dropped as very rare;
* each remaining distinct word is one concept, with an equal share of the caption's concept
  weight: a caption of n concepts gives each a squared-cosine share 1/n.

Without the real annotation files, :func:`synthetic_captions` draws captions from a
Zipf-distributed vocabulary (common sound words first, then made-up words), so that a few
concepts are everywhere and most are rare, as in real captions.

:func:`concept_overlap` measures the resulting difficulty of a corpus: for each query, how many
*other* recordings hold an event that shares at least one of its concepts.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


def _word_list(text: str) -> list[str]:
    """The whitespace-separated words of a block of text."""
    return text.split()


#: Words shorter than this are never concepts ("s" of "man's", "a").
MIN_WORD_LENGTH = 2

#: Words that name no sound: articles, pronouns, prepositions, conjunctions, auxiliaries,
#: counts and vague words.
STOP_WORDS: frozenset[str] = frozenset(_word_list("""
a an the and or but nor so yet as while when whilst then than if until after before during
of in on at to from by with without within into onto upon over under above below through
throughout along across around about against among amid amidst between beside behind near
nearby toward towards off out up down away back again also too very just still only even
is are was were be been being am has have had having do does did doing can could will would
shall should may might must gets get got getting goes go going gone makes make made making
it its he him his she her hers they them their theirs we us our you your i me my this
that these those there here which who whom whose what where why how
some someone somebody something somewhere any anyone anything each every everything all
both either neither other others another such same own
one two three four five six several many much more most few less little lot lots
sound sounds sounding noises thing things object objects stuff kind type
continuously constantly repeatedly briefly slightly occasionally
"""))

#: Common sound words: the most frequent ranks of synthetic captions.
SOUND_WORDS: tuple[str, ...] = tuple(_word_list("""
man woman music engine water wind birds people car talking dog rain crowd train voice
child baby bell horn siren door footsteps applause thunder waves insects machine drill
hammer keyboard phone alarm clock guitar piano drum singing whistle helicopter airplane
motorcycle truck bus traffic crying cough breathing snoring typing clapping cheering
shouting gunshot explosion fire crackling splash dripping stream river ocean frog cow horse
sheep rooster chicken duck owl crow pigeon cricket bee fly vacuum blender microwave kettle
sizzling frying chopping dishes glass metal wood plastic paper rustling scraping banging
knocking ticking beeping buzzing humming whirring rumbling roaring squeaking creaking
clanging chiming ringing tapping zipper coins keys shower toilet faucet fan air static
radio television announcement whisper scream laughter chatter
"""))

_WORD = re.compile(r"[a-z]+")


def caption_words(caption: str) -> list[str]:
    """The words of a caption: lower-cased runs of the letters a-z, in order."""
    return _WORD.findall(caption.lower())


def is_content_word(word: str) -> bool:
    """True for a word that may be a concept: long enough and not a stop word."""
    return len(word) >= MIN_WORD_LENGTH and word not in STOP_WORDS


@dataclass(frozen=True)
class ConceptVocabulary:
    """The concept words of a caption pool.

    Attributes
    ----------
    counts : {word: number of pool captions holding it}, concept words only.
    n_captions : size of the pool.
    min_count : the least count a concept word has.
    """

    counts: Mapping[str, int]
    n_captions: int
    min_count: int

    @classmethod
    def from_captions(cls, captions: Iterable[str], min_count: int = 2) -> ConceptVocabulary:
        """Count every content word once per caption; keep those held by >= ``min_count``."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        held: Counter[str] = Counter()
        n = 0
        for caption in captions:
            n += 1
            held.update({w for w in caption_words(caption) if is_content_word(w)})
        kept = {w: c for w, c in sorted(held.items()) if c >= min_count}
        return cls(counts=kept, n_captions=n, min_count=min_count)

    @property
    def words(self) -> tuple[str, ...]:
        """The concept words, sorted."""
        return tuple(self.counts)

    def __len__(self) -> int:
        return len(self.counts)

    def __contains__(self, word: object) -> bool:
        return word in self.counts

    def concepts(self, caption: str) -> tuple[str, ...]:
        """The distinct concept words of ``caption``, in order of first appearance."""
        return tuple(dict.fromkeys(w for w in caption_words(caption) if w in self.counts))


# --------------------------------------------------------------------------- directions


def word_key(word: str) -> int:
    """A stable 64-bit integer for a word (first 8 bytes of its SHA-256), for seeding."""
    return int.from_bytes(hashlib.sha256(word.encode("utf-8")).digest()[:8], "little")


def concept_directions(
    words: Iterable[str], basis: NDArray[np.floating[Any]], seed_prefix: Sequence[int]
) -> dict[str, NDArray[np.float64]]:
    """One unit direction per word, drawn isotropically in the span of ``basis``.

    ``basis``: (D, C) orthonormal columns (the content subspace of a D-dimensional space).
    Each word's direction is ``unit(basis @ z)`` with ``z ~ N(0, I_C)`` drawn from the seed
    sequence ``[*seed_prefix, word_key(word)]``: it depends on the word and the seed only, not
    on which other words exist. Returns {word: (D,) float64}.
    """
    basis64 = np.asarray(basis, dtype=np.float64)
    out = {}
    for word in words:
        z = np.random.default_rng([*seed_prefix, word_key(word)]).standard_normal(basis64.shape[1])
        v = basis64 @ z
        out[word] = v / np.linalg.norm(v)
    return out


def concept_mix(
    concepts: Sequence[str], directions: Mapping[str, NDArray[np.floating[Any]]]
) -> NDArray[np.float64] | None:
    """The unit concept mix of a caption: equal weights, (D,); None when it has no concept."""
    if not concepts:
        return None
    v = np.sum([directions[c] for c in concepts], axis=0, dtype=np.float64)
    return v / np.linalg.norm(v)


def with_concepts(
    detail: NDArray[np.floating[Any]], mix: NDArray[np.floating[Any]] | None, share: float
) -> NDArray[np.float64]:
    """An event direction: concept mix and own detail, squared-cosine share ``share`` of mix.

    ``detail`` and ``mix``: (D,) unit vectors. The detail is made orthogonal to the mix first,
    so that ``(result . mix)**2 == share`` exactly. With no mix the detail is returned.
    """
    d = np.asarray(detail, dtype=np.float64)
    if mix is None:
        return d / np.linalg.norm(d)
    m = np.asarray(mix, dtype=np.float64)
    perp = d - (d @ m) * m
    perp /= np.linalg.norm(perp)
    return math.sqrt(share) * m + math.sqrt(1.0 - share) * perp


# --------------------------------------------------------------------------- synthetic captions


def synthetic_word(rank: int) -> str:
    """The word of a synthetic vocabulary rank: a common sound word, else a made-up one."""
    if rank < len(SOUND_WORDS):
        return SOUND_WORDS[rank]
    letters, n = [], rank
    while True:
        n, r = divmod(n, 26)
        letters.append(chr(ord("a") + r))
        if n == 0:
            break
    return "zz" + "".join(reversed(letters))


def synthetic_captions(
    rng: np.random.Generator,
    n: int,
    vocabulary_size: int = 400,
    exponent: float = 1.0,
    words_per_caption: tuple[int, int] = (1, 4),
) -> list[str]:
    """``n`` synthetic captions: distinct words drawn with probability ~ (rank + 1)^-exponent.

    Each caption holds between ``words_per_caption[0]`` and ``[1]`` distinct words of the
    first ``vocabulary_size`` ranks of :func:`synthetic_word`, joined by spaces.
    """
    lo, hi = words_per_caption
    if not 1 <= lo <= hi <= vocabulary_size:
        raise ValueError("need 1 <= words_per_caption[0] <= [1] <= vocabulary_size")
    p = np.arange(1, vocabulary_size + 1, dtype=np.float64) ** -float(exponent)
    p /= p.sum()
    words = [synthetic_word(r) for r in range(vocabulary_size)]
    out = []
    for _ in range(n):
        k = int(rng.integers(lo, hi + 1))
        ranks = rng.choice(vocabulary_size, size=k, replace=False, p=p)
        out.append(" ".join(words[int(r)] for r in ranks))
    return out


# --------------------------------------------------------------------------- difficulty


@dataclass(frozen=True)
class QueryOverlap:
    """How many other recordings hold sounds like those a query names.

    Attributes
    ----------
    qid : the query.
    n_concepts : its number of concepts (0: nothing it names recurs anywhere).
    n_recordings : OTHER recordings holding an event that shares at least one of its concepts.
    n_full : other recordings holding an event that has all of its concepts.
    mean_share : over those ``n_recordings``, the mean of the largest share of the query's
        concept weight that one event of the recording holds (1/n per shared concept of n);
        0 when there are none.
    """

    qid: str
    n_concepts: int
    n_recordings: int
    n_full: int
    mean_share: float


def concept_overlap(
    queries: Sequence[tuple[str, str, Sequence[str]]],
) -> dict[str, QueryOverlap]:
    """Per query, the other recordings whose events share its concepts.

    ``queries``: (qid, recording id, concept words) of every query; every query is also the
    event it describes in its own recording. Returns {qid: QueryOverlap}, in input order.
    """
    concept_sets = [frozenset(c) for _, _, c in queries]
    vids = [str(v) for _, v, _ in queries]
    postings: dict[str, list[int]] = {}
    for i, concepts in enumerate(concept_sets):
        for word in concepts:
            postings.setdefault(word, []).append(i)
    out: dict[str, QueryOverlap] = {}
    for (qid, _, _), vid, concepts in zip(queries, vids, concept_sets, strict=True):
        shared: Counter[int] = Counter()
        for word in concepts:
            shared.update(j for j in postings[word] if vids[j] != vid)
        best: dict[str, int] = {}
        for j, count in shared.items():
            if count > best.get(vids[j], 0):
                best[vids[j]] = count
        n = len(concepts)
        out[str(qid)] = QueryOverlap(
            qid=str(qid),
            n_concepts=n,
            n_recordings=len(best),
            n_full=sum(1 for c in best.values() if c == n),
            mean_share=float(np.mean(list(best.values()))) / n if best else 0.0,
        )
    return out


def overlap_summary(overlaps: Mapping[str, QueryOverlap]) -> dict[str, Any]:
    """Summary of :func:`concept_overlap` (JSON-ready).

    ``other_recordings``: quartiles, median and maximum of the per-query counts of other
    recordings sharing a concept; ``share_with_at_least_1`` / ``_10``: fraction of queries
    with >= 1 / >= 10 such recordings; ``share_with_full_match``: fraction with another
    recording holding all their concepts; ``shared_weight_median``: median ``mean_share``
    over the queries with >= 1 such recording; ``queries_without_concepts``: count.
    """
    rows = list(overlaps.values())
    if not rows:
        return {"n_queries": 0}
    n = np.array([r.n_recordings for r in rows], dtype=np.float64)
    shares = [r.mean_share for r in rows if r.n_recordings > 0]
    q25, q50, q75 = np.percentile(n, [25, 50, 75])
    return {
        "n_queries": len(rows),
        "other_recordings": {
            "q25": float(q25), "median": float(q50), "q75": float(q75), "max": int(n.max()),
        },
        "share_with_at_least_1": float(np.mean(n >= 1)),
        "share_with_at_least_10": float(np.mean(n >= 10)),
        "share_with_full_match": float(np.mean([r.n_full >= 1 for r in rows])),
        "shared_weight_median": float(np.median(shares)) if shares else 0.0,
        "queries_without_concepts": sum(1 for r in rows if r.n_concepts == 0),
    }
