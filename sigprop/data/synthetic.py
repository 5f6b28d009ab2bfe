"""A generator of short TinyStories-like stories, written for sigprop (no external data).

Each story has a hero and a friend (named characters drawn from :data:`GIRLS` / :data:`BOYS`), one or
two coloured objects (``"the red ball"``, ``"Tom's blue kite"``), one or two places and an adult. The
plot is a short chain of episodes (the object gets lost / is wanted by the friend / breaks / is given
as a present) whose sentences keep referring back to the same entities with the same attributes.
Because names, colours, objects and places are drawn afresh for every story, a masked word such as the
colour in "Tom gave the [MASK] ball back to Lily." cannot be guessed from unigram statistics: the model
has to look back at "Lily had a red ball." earlier in the context. That is what makes this corpus a
useful small test of whether attention learns.

The vocabulary is small (a few hundred words), the stories are 60-160 words long, and everything is
deterministic given the seed (Python's :class:`random.Random`, whose ``choice``/``randrange`` are stable
across platforms and Python versions since 3.2).
"""

from __future__ import annotations

import random

__all__ = [
    "GIRLS",
    "BOYS",
    "NAMES",
    "COLOURS",
    "OBJECTS",
    "PLACES",
    "DEFAULT_N_STORIES",
    "generate_stories",
    "story",
]

GIRLS: tuple[str, ...] = (
    "Lily",
    "Mia",
    "Emma",
    "Sara",
    "Anna",
    "Lucy",
    "Zoe",
    "Ella",
    "Rose",
    "Amy",
    "Kim",
    "Jane",
)
BOYS: tuple[str, ...] = (
    "Tom",
    "Ben",
    "Max",
    "Sam",
    "Leo",
    "Jack",
    "Tim",
    "Finn",
    "Jake",
    "Noah",
    "Bob",
    "Dan",
)
NAMES: tuple[str, ...] = GIRLS + BOYS
COLOURS: tuple[str, ...] = (
    "red",
    "blue",
    "green",
    "yellow",
    "pink",
    "purple",
    "orange",
    "white",
    "black",
    "brown",
)
OBJECTS: tuple[str, ...] = (
    "ball", "kite", "box", "hat", "car", "doll", "book", "cup", "boat", "drum", "train", "bike", "shoe", "bag",
    "truck", "balloon", "crayon", "shell", "key", "spoon", "sock", "blanket", "rock", "coin", "ring", "bear",
    "scarf", "bucket", "plane", "robot",
)  # fmt: skip
PLACES: tuple[str, ...] = (
    "park", "garden", "beach", "forest", "school", "farm", "lake", "hill", "shop", "zoo", "river", "yard",
    "library", "playground", "pond",
)  # fmt: skip
ADULTS: tuple[str, ...] = ("mom", "dad", "grandma", "grandpa", "aunt", "uncle")
PETS: tuple[str, ...] = ("dog", "cat", "bird", "bunny", "frog", "duck")
PET_NAMES: tuple[str, ...] = ("Spot", "Buddy", "Coco", "Pip", "Daisy", "Max", "Bella", "Sunny")
KIND: tuple[str, ...] = ("kind", "happy", "curious", "brave", "shy", "funny", "smart", "gentle")
SIZE: tuple[str, ...] = ("big", "small", "little", "shiny", "soft", "old", "new")
BAD_FEELINGS: tuple[str, ...] = ("sad", "scared", "upset", "worried")
GOOD_FEELINGS: tuple[str, ...] = ("happy", "glad", "proud", "excited")
HIDING: tuple[str, ...] = (
    "under a big tree", "behind a rock", "in the tall grass", "under a bench", "near the water",
    "inside an old box", "next to a bush", "under some leaves",
)  # fmt: skip

#: Default number of stories: about 500k WordPiece tokens (see ``sigprop.data`` docs for the measurement).
DEFAULT_N_STORIES = 3500

Ctx = dict[str, str]
#: an episode: its sentence slots in order, each a tuple of templates one of which is drawn
Episode = tuple[tuple[str, ...], ...]


def _pick(rng: random.Random, options: tuple[str, ...] | list[str]) -> str:
    return options[rng.randrange(len(options))]


def _fill(rng: random.Random, ctx: Ctx, templates: tuple[str, ...]) -> str:
    return _pick(rng, templates).format(**ctx)


def _episode(rng: random.Random, ctx: Ctx, slots: Episode) -> list[str]:
    return [_fill(rng, ctx, templates) for templates in slots]


def _pronouns(prefix: str, girl: bool) -> Ctx:
    he, his, him = ("she", "her", "her") if girl else ("he", "his", "him")
    return {
        f"{prefix}he": he,
        f"{prefix}his": his,
        f"{prefix}him": him,
        f"{prefix}He": he.capitalize(),
        f"{prefix}His": his.capitalize(),
        f"{prefix}kid": "girl" if girl else "boy",
    }


# --- episodes ----------------------------------------------------------------------------------------
# Naming: A = hero, B = friend, c/o = hero's colour/object, c2/o2 = friend's, P/P2 = places, X = adult.


_INTRO: Episode = (
    (
        "Once upon a time, there was a little {Akid} named {A}.",
        "There was a {kind} {Akid} called {A}.",
        "{A} was a {kind} little {Akid} who lived near the {P}.",
        "Once upon a time, a {kind} {Akid} named {A} lived in a small house.",
    ),
    (
        "{A} had a {size} {c} {o}.",
        "{A}'s {X} gave {Ahim} a {c} {o}.",
        "{A} loved {Ahis} {c} {o} very much.",
        "{A} had a {c} {o} that {Ahe} loved.",
    ),
)  # fmt: skip


_FRIEND: Episode = (
    (
        "{A} had a friend named {B}.",
        "{A}'s best friend was {B}.",
        "One day, {A} met a {Bkid} named {B} at the {P}.",
    ),
    (
        "{B} had a {c2} {o2}.",
        "{B} always carried a {c2} {o2}.",
        "{B} showed {A} {Bhis} {c2} {o2}.",
    ),
)  # fmt: skip


_TRIP: Episode = (
    (
        "One day, {A} and {B} went to the {P}.",
        "One sunny day, {A} took the {c} {o} to the {P}.",
        "One morning, {A} and {B} walked to the {P} with the {c} {o}.",
    ),
    (
        "At the {P}, {A} and {B} played with the {c} {o}.",
        "{A} and {B} played at the {P} all morning.",
        "{B} played with the {c2} {o2} and {A} played with the {c} {o}.",
    ),
)  # fmt: skip


_LOST: Episode = (
    (
        "Then the {c} {o} rolled away.",
        "Suddenly, {A} could not find the {c} {o}.",
        "But then the {c} {o} was gone.",
    ),
    (
        "{A} felt {bad} and began to cry.",
        "{A} was very {bad}.",
        '{A} said, "Where is my {c} {o}?"',
    ),
    (
        "{B} looked everywhere and found the {c} {o} {hide}.",
        "{B} helped {A} look for the {c} {o}. They found it {hide}.",
        "{B} saw something {c} {hide}. It was the {c} {o}!",
    ),
    (
        "{B} gave the {c} {o} back to {A}.",
        '{A} said, "Thank you, {B}! You found my {c} {o}."',
        "{A} hugged {B} and held the {c} {o} tight.",
    ),
)  # fmt: skip


_SHARE: Episode = (
    (
        "{B} wanted to play with the {c} {o} too.",
        '{B} said, "Can I play with your {c} {o}, {A}?"',
    ),
    (
        "At first, {A} did not want to share the {c} {o}.",
        "{A} thought about it for a moment.",
    ),
    (
        "Then {A} gave the {c} {o} to {B}, and {B} gave the {c2} {o2} to {A}.",
        "{A} decided to share the {c} {o} with {B}.",
        "{A} let {B} hold the {c} {o}, and {B} let {A} hold the {c2} {o2}.",
    ),
    (
        "{B} was {good}. Sharing the {c} {o} was fun.",
        "{A} and {B} took turns with the {c} {o}.",
    ),
)  # fmt: skip


_BROKEN: Episode = (
    (
        "Oh no! The {c} {o} fell and broke.",
        "The {c} {o} hit a rock and broke.",
    ),
    (
        "{A} was {bad}. {Ahe} ran to find {Ahis} {X}.",
        "{A} took the broken {c} {o} to {Ahis} {X}.",
    ),
    (
        "{A}'s {X} fixed the {c} {o} with some glue.",
        'The {X} smiled and said, "We can fix your {c} {o}."',
    ),
    (
        "Soon the {c} {o} was as good as new, and {A} was {good}.",
        "{A} thanked {Ahis} {X} and went back to the {P} with the {c} {o}.",
    ),
)  # fmt: skip


_PET: Episode = (
    (
        "At the {P2}, they saw a {pet} named {petname}.",
        "{A} had a {pet} named {petname}.",
    ),
    (
        "{petname} the {pet} took the {c2} {o2} and ran to the {P2}.",
        "{petname} liked the {c2} {o2} and wanted to play with it.",
    ),
    (
        "{B} ran after {petname} and got the {c2} {o2} back.",
        "{A} and {B} laughed and played with {petname} and the {c2} {o2}.",
    ),
)  # fmt: skip


_ENDING: Episode = (
    (
        "{A} and {B} played at the {P} until the sun went down.",
        "From that day on, {A} always kept the {c} {o} safe.",
        "{A} and {B} were best friends, and they played with the {c} {o} and the {c2} {o2} every day.",
        "That night, {A} went to bed with the {c} {o} next to {Ahim}.",
        "{A} learned that it is good to share, and {B} learned it too.",
    ),
)  # fmt: skip


_MIDDLE: tuple[Episode, ...] = (_LOST, _SHARE, _BROKEN, _PET)


def story(rng: random.Random) -> str:
    """One story drawn with ``rng`` (see the module docstring for its structure)."""
    girl_a = rng.random() < 0.5
    a = _pick(rng, GIRLS if girl_a else BOYS)
    girl_b = rng.random() < 0.5
    b = _pick(rng, [n for n in (GIRLS if girl_b else BOYS) if n != a])
    c, c2 = rng.sample(COLOURS, 2)
    o, o2 = rng.sample(OBJECTS, 2)
    p, p2 = rng.sample(PLACES, 2)
    ctx: Ctx = {
        "A": a, "B": b, "c": c, "o": o, "c2": c2, "o2": o2, "P": p, "P2": p2,
        "X": _pick(rng, ADULTS), "kind": _pick(rng, KIND), "size": _pick(rng, SIZE),
        "bad": _pick(rng, BAD_FEELINGS), "good": _pick(rng, GOOD_FEELINGS), "hide": _pick(rng, HIDING),
        "pet": _pick(rng, PETS), "petname": _pick(rng, PET_NAMES),
        **_pronouns("A", girl_a), **_pronouns("B", girl_b),
    }  # fmt: skip
    sentences = [s for ep in (_INTRO, _FRIEND, _TRIP) for s in _episode(rng, ctx, ep)]
    n_middle = 1 + (rng.random() < 0.6)
    for episode in rng.sample(_MIDDLE, n_middle):
        sentences += _episode(rng, ctx, episode)
    sentences += _episode(rng, ctx, _ENDING)
    return " ".join(sentences)


def generate_stories(n_stories: int = DEFAULT_N_STORIES, seed: int = 0) -> list[str]:
    """``n_stories`` stories, deterministic given ``seed`` (different seeds give different stories)."""
    if n_stories < 0:
        raise ValueError(f"n_stories must be >= 0, got {n_stories}")
    rng = random.Random(f"sigprop-synthetic-{seed}")
    return [story(rng) for _ in range(n_stories)]
