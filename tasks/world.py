"""A fictional world of people, towns and organisations, deterministic from a seed.

The sample crawl writes an encyclopedia about it, and later stages ask about it: SFT teaches
the model to answer from what it read and to say "I don't know" about people who never
appear, and search looks facts up. So the facts must be unambiguous: every full name, town
name and organisation name is unique, and every entity has one value per attribute.
`unknown_names` are plausible people whose first names and surnames come from pools the world
never draws from, so no page can mention them, not even by surname.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

FIRST_NAMES = {
    "she": (
        "Alma Astrid Beatrix Carla Dagny Edith Elena Elsa Freya Greta Hanna Helga Ida Ilse Ingrid Irene "
        "Johanna Karin Klara Lena Lidia Linnea Lotte Lucia Magda Maren Marta Mirela Nadia Nora Olga "
        "Paula Petra Rosa Ruth Sabine Selma Signe Sofia Stella Tamara Tilde Ursula Vera Viola Wilma "
        "Yara Zita Agnes Berit Cecilia Dora Emilia Frida Gisela Hedda Inka Jana Kira Liv Mona Nela"
    ).split(),
    "he": (
        "Anton Arvid Bruno Casimir Dario Emil Erik Felix Gustav Hakon Henrik Hugo Ivo Jakob Jonas Josef "
        "Karl Kasper Lars Leon Linus Lukas Magnus Marek Matteo Milan Nils Oskar Otto Pavel Rasmus "
        "Rudolf Sander Silas Stefan Teodor Tobias Valter Viktor Wendel Aksel Bertil Cyril Dmitri Edvin "
        "Filip Gunnar Harald Ismo Jarek Konrad Leif Mats Nikolai Olav Pekka Roald Sven Tomas Udo"
    ).split(),
}

SURNAMES = (
    "Aalto Abend Adler Albrecht Andersen Arnesen Aster Baker Bauer Berg Bergman Birch Blom Brandt "
    "Brenner Castell Dahl Dalby Eckert Ekberg Engel Falk Farrow Fischer Fleming Frost Gale Garver "
    "Gerber Hale Halvorsen Hammar Hart Haugen Holm Horn Ibsen Iversen Jansen Juhl Kaiser Keller "
    "Kjeldsen Krag Krause Lange Larsen Lind Lund Marsh Meyer Moller Munk Nagel Navarro Nordin Novak "
    "Olsen Ortega Pike Quist Rask Reed Ritter Rowe Sandberg Sato Schmid Sorensen Stahl Stone Strand "
    "Thorne Tovar Ulrich Vance Varga Vogel Wade Weber Wells West Winter Wolff Yates Zeller Zorn "
    "Acre Barlow Caddick Denholm Elgar Fairweather Greaves Hollis Ingram Jessop Kettle Lowther "
    "Merriman Nettles Oakes Penrose Quarry Rook Selby Tolland Underhill Voss Whitlock Yardley"
).split()

# Pools the crawl never uses: `unknown_names` draws only from these.
UNKNOWN_FIRST_NAMES = (
    "Orson Thaddeus Leopold Ambrose Cornelius Ignatius Barnaby Octavian Florian Evander "
    "Philippa Rosalind Ottilie Seraphina Wilhelmina Genevieve Henrietta Isolde Marguerite Leocadia"
).split()
UNKNOWN_SURNAMES = (
    "Kovacs Pemberton Ashcombe Delacroix Fenwick Galbraith Hargreave Ironside Jablonski Kestrel "
    "Lindqvist Montague Nightingale Oyelaran Prendergast Quennell Rutherford Szabo Tremaine Vasquez"
).split()

_TOWN_HEADS = (
    "Ash Bram Cold Dun Elm Fern Glen Hollow Iron Kings Lark Marrow North Oak Pen Quarry Raven Salt "
    "Thorn Umber Vale West Wren Amber Birch Cinder Deer Ember Frost Gold Heron Juniper Kestle"
).split()
_TOWN_TAILS = "by ford holm wick mouth stead bridge haven field moor ton wood dale port".split()
REGIONS = ("Northmarch", "Lowmere", "Eastreach", "Saltcoast", "Highfold", "Greywater", "Southwold")
RIVERS = ("Avel", "Brisk", "Corran", "Dwyn", "Essel", "Fenna", "Glas", "Harrow", "Isca", "Lune", "Merrin", "Tavy")
INDUSTRIES = (
    "fishing and boat building",
    "wool and weaving",
    "orchards and cider making",
    "slate quarrying",
    "river trade",
    "glassmaking",
    "dairy farming",
    "printing and bookbinding",
    "clock making",
    "shipping and warehousing",
)
ORG_KINDS = (
    ("Ferry Company", "transport company"),
    ("Public Library", "public library"),
    ("Observatory", "observatory"),
    ("General Hospital", "hospital"),
    ("Institute of Technology", "technical university"),
    ("Botanical Garden", "botanical garden"),
    ("Railway Works", "railway engineering firm"),
    ("Museum of History", "history museum"),
    ("Water Board", "water utility"),
    ("Printing House", "printing firm"),
    ("Orchestra", "symphony orchestra"),
    ("Shipyard", "shipyard"),
)
PROFESSIONS = (
    "cartographer",
    "nurse",
    "civil engineer",
    "librarian",
    "astronomer",
    "botanist",
    "archivist",
    "ferry captain",
    "surveyor",
    "pharmacist",
    "structural engineer",
    "historian",
    "violinist",
    "printer",
    "shipwright",
    "hydrologist",
    "statistician",
    "teacher",
    "architect",
    "translator",
    "geologist",
    "electrician",
    "conservator",
    "accountant",
)
HOBBIES = (
    "birdwatching",
    "sailing",
    "playing the cello",
    "growing tomatoes",
    "running long distances",
    "playing chess",
    "restoring old bicycles",
    "writing poetry",
    "keeping bees",
    "painting landscapes",
    "rowing",
    "baking bread",
    "collecting old maps",
    "hiking in the hills",
    "playing the accordion",
    "carving wood",
    "watching the night sky",
    "knitting",
    "skiing cross-country",
    "fishing",
)


@dataclass(frozen=True)
class Town:
    id: str
    name: str
    region: str
    river: str
    founded: int
    population: int
    industry: str

    def facts(self) -> dict[str, str]:
        return {
            "region": self.region,
            "river": self.river,
            "founded": str(self.founded),
            "population": str(self.population),
            "industry": self.industry,
        }


@dataclass(frozen=True)
class Org:
    id: str
    name: str
    kind: str
    town: str  # town id
    founded: int


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    pronoun: str  # "she" or "he"
    birth_year: int
    birthplace: str  # town id
    profession: str
    employer: str  # org id
    hobby: str
    spouse: str | None = None  # person id


@dataclass(frozen=True)
class World:
    people: tuple[Person, ...]
    towns: tuple[Town, ...]
    orgs: tuple[Org, ...]
    unknown_names: tuple[str, ...]

    def town(self, town_id: str) -> Town:
        return self._index[town_id]

    def org(self, org_id: str) -> Org:
        return self._index[org_id]

    def person(self, person_id: str) -> Person:
        return self._index[person_id]

    @cached_property
    def _index(self) -> dict[str, object]:
        return {e.id: e for e in (*self.people, *self.towns, *self.orgs)}

    def facts(self, entity_id: str) -> dict[str, str]:
        """Every fact about an entity, one value per attribute, names resolved."""
        entity = self._index[entity_id]
        if isinstance(entity, Town):
            return entity.facts()
        if isinstance(entity, Org):
            return {"kind": entity.kind, "headquarters": self.town(entity.town).name, "founded": str(entity.founded)}
        assert isinstance(entity, Person)
        out = {
            "birth_year": str(entity.birth_year),
            "birthplace": self.town(entity.birthplace).name,
            "profession": entity.profession,
            "employer": self.org(entity.employer).name,
            "hobby": entity.hobby,
        }
        if entity.spouse:
            out["spouse"] = self.person(entity.spouse).name
        return out

    def name(self, entity_id: str) -> str:
        return self._index[entity_id].name  # type: ignore[attr-defined]


TOWN_NAMES = tuple(h + t for h in _TOWN_HEADS for t in _TOWN_TAILS)


def sizes(people: int, towns: int | None = None) -> tuple[int, int]:
    """(towns, organisations) in a world of `people` people."""
    # At most five natives per town and five staff per organisation (on average), so a town's
    # or an employer's page mentions each person with a different sentence pattern.
    n_towns = min(towns or -(-people // 5), len(TOWN_NAMES))
    return n_towns, min(n_towns * len(ORG_KINDS), -(-people // 5))


def build_world(seed: int, people: int, towns: int | None = None, unknown: int = 40) -> World:
    """A world of `people` people, with about one town and one organisation per five people."""
    max_people = sum(len(v) for v in FIRST_NAMES.values()) * len(SURNAMES)
    if not 1 <= people <= max_people:
        raise ValueError(f"people must be between 1 and {max_people}, got {people}")
    rng = random.Random(f"world:{seed}")
    n_towns, n_orgs = sizes(people, towns)
    town_list = []
    for i, name in enumerate(rng.sample(TOWN_NAMES, n_towns)):
        town_list.append(
            Town(
                id=f"town-{i:04d}",
                name=name,
                region=rng.choice(REGIONS),
                river=rng.choice(RIVERS),
                founded=rng.randrange(1150, 1890),
                population=rng.randrange(1200, 96000),
                industry=rng.choice(INDUSTRIES),
            )
        )
    # One organisation per town at most for each kind, so "<town> <kind>" names are unique.
    org_names = [(t, k) for t in town_list for k in ORG_KINDS]
    org_list = [
        Org(id=f"org-{i:04d}", name=f"{t.name} {k[0]}", kind=k[1], town=t.id, founded=rng.randrange(1780, 2005))
        for i, (t, k) in enumerate(rng.sample(org_names, n_orgs))
    ]
    names = [(p, f, s) for p, firsts in FIRST_NAMES.items() for f in firsts for s in SURNAMES]
    chosen = rng.sample(names, people)
    persons = [
        dict(
            id=f"person-{i:05d}",
            name=f"{first} {last}",
            pronoun=pronoun,
            birth_year=rng.randrange(1931, 2001),
            birthplace=rng.choice(town_list).id,
            profession=rng.choice(PROFESSIONS),
            employer=rng.choice(org_list).id,
            hobby=rng.choice(HOBBIES),
        )
        for i, (pronoun, first, last) in enumerate(chosen)
    ]
    # About four in ten are married to someone else in the world: symmetric, one spouse each.
    order = rng.sample(range(people), people)
    married = order[: (len(order) * 2 // 5) // 2 * 2]
    for a, b in zip(married[::2], married[1::2]):
        persons[a]["spouse"], persons[b]["spouse"] = persons[b]["id"], persons[a]["id"]
    return World(
        people=tuple(Person(**p) for p in persons),
        towns=tuple(town_list),
        orgs=tuple(org_list),
        unknown_names=unknown_names(seed, unknown),
    )


def unknown_names(seed: int, count: int = 40) -> tuple[str, ...]:
    """People who appear nowhere in the crawl: for "I don't know" tests."""
    rng = random.Random(f"unknown:{seed}")
    every = [f"{f} {s}" for f in UNKNOWN_FIRST_NAMES for s in UNKNOWN_SURNAMES]
    return tuple(rng.sample(every, min(count, len(every))))
