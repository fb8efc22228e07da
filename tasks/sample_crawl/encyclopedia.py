"""Encyclopedia pages about the fictional world (tasks/world.py): people, towns, organisations.

Each person's facts are stated on their own page and again, phrased differently, on their home
town's page and their employer's page, so the same fact reaches the model in several wordings.
Every page reports exactly which facts it states (`Article.facts`), which becomes the `facts`
dataset. The prose around the facts is drawn from pools, so pages of people with the same
profession still read differently, and no sentence states a second value for an attribute.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tasks.sample_crawl.site import Block
from tasks.world import Org, Person, Town, World

# Two or three sentences of colour per profession; {p} {P} {poss} {obj} are pronoun forms.
WORK = {
    "cartographer": (
        "{P} draws coastal charts by hand before checking them against survey data.",
        "Much of {poss} work is redrawing old field sketches so that they match modern measurements.",
        "{P} is known for maps that leave out clutter and show only what a traveller needs.",
    ),
    "nurse": (
        "{P} works long night shifts on a busy ward and trains newly qualified staff.",
        "Colleagues say {p} stays calm when the ward is at its busiest.",
        "{P} has spent years improving how patients are handed over between shifts.",
    ),
    "civil engineer": (
        "{P} designs footbridges and small road crossings over rivers and railways.",
        "Much of {poss} time goes into checking drawings against what is actually built on site.",
        "{P} argues that a good bridge is one that nobody notices until it is gone.",
    ),
    "librarian": (
        "{P} looks after a large collection of local newspapers and parish records.",
        "Visitors often ask {obj} for help tracing family histories through old registers.",
        "{P} started a reading group for children that now meets every Saturday.",
    ),
    "astronomer": (
        "{P} measures the brightness of variable stars over many clear nights.",
        "Most of {poss} observations are made with a modest telescope and a patient routine.",
        "{P} has written several guides that explain the night sky to beginners.",
    ),
    "botanist": (
        "{P} studies the wild plants that grow along river banks and old walls.",
        "Every summer {p} surveys meadows and records which flowers have returned.",
        "{P} has collected seeds from rare grasses so that they can be grown again.",
    ),
    "archivist": (
        "{P} catalogues letters, ledgers and drawings that were donated over many decades.",
        "Much of {poss} day is spent deciding what must be repaired before it can be read.",
        "{P} believes that an archive is only useful when people can find what is in it.",
    ),
    "ferry captain": (
        "{P} steers a passenger ferry across a wide and often windy estuary.",
        "In winter {p} plans each crossing around the tides and the early darkness.",
        "{P} has carried thousands of commuters, cyclists and school children over the water.",
    ),
    "surveyor": (
        "{P} measures land for new houses, roads and drainage schemes.",
        "Much of {poss} work is done outdoors in every kind of weather.",
        "{P} still checks important boundaries twice, once with modern tools and once by tape.",
    ),
    "pharmacist": (
        "{P} runs the dispensary and advises patients about their medicines.",
        "Many regular customers ask for {obj} by name when they have a question.",
        "{P} has helped to set up a service that delivers prescriptions to remote farms.",
    ),
    "structural engineer": (
        "{P} checks how old buildings carry their weight before they are altered.",
        "{P} is often called in when a church tower or mill chimney shows new cracks.",
        "Much of {poss} work is quietly making historic buildings safe to use again.",
    ),
    "historian": (
        "{P} writes about the everyday lives of people in small market towns.",
        "Most of {poss} research is based on court records, diaries and shop accounts.",
        "{P} gives public talks that regularly fill the local town hall.",
    ),
    "violinist": (
        "{P} plays in the first violin section and teaches young players in the evenings.",
        "{P} practises for several hours a day, even on the days of concerts.",
        "Audiences know {obj} for a warm tone in slow movements.",
    ),
    "printer": (
        "{P} sets type and runs presses for posters, pamphlets and small books.",
        "{P} still prefers metal type for work that has to look its best.",
        "Many local societies have had their first programmes printed by {obj}.",
    ),
    "shipwright": (
        "{P} builds and repairs wooden boats using traditional methods.",
        "Much of {poss} work is replacing planks on fishing boats that are older than {p} is.",
        "{P} teaches apprentices how to shape timber with hand tools.",
    ),
    "hydrologist": (
        "{P} studies how rivers rise and fall after heavy rain.",
        "{P} keeps long records of water levels that help towns prepare for floods.",
        "Much of {poss} fieldwork involves wading into cold streams with measuring rods.",
    ),
    "statistician": (
        "{P} analyses survey results and writes reports that explain them plainly.",
        "{P} is careful to say how uncertain every estimate is.",
        "Much of {poss} work is checking that the numbers in a report really support its claims.",
    ),
    "teacher": (
        "{P} teaches mathematics and science to pupils between eleven and sixteen.",
        "Former pupils remember {obj} for patient explanations and hard homework.",
        "{P} runs an after-school club where pupils build model boats and bridges.",
    ),
    "architect": (
        "{P} designs schools, libraries and small public buildings.",
        "{P} prefers local stone and timber and likes buildings that age well.",
        "Much of {poss} time is spent listening to the people who will use a building.",
    ),
    "translator": (
        "{P} translates novels and technical manuals between several languages.",
        "{P} says that the hardest part of the job is keeping the rhythm of the original.",
        "Much of {poss} work is done early in the morning before the town wakes up.",
    ),
    "geologist": (
        "{P} maps the rocks of the surrounding hills and old quarries.",
        "Much of {poss} fieldwork involves long walks with a hammer and a notebook.",
        "{P} has written a short guide to the fossils that can be found along the shore.",
    ),
    "electrician": (
        "{P} installs and repairs wiring in houses, shops and workshops.",
        "{P} is known for neat work and for explaining problems in plain words.",
        "Much of {poss} work is making old buildings safe for modern use.",
    ),
    "conservator": (
        "{P} cleans and repairs paintings, maps and fragile objects.",
        "Much of {poss} work is slow and done under a magnifying lamp.",
        "{P} keeps detailed notes so that later conservators know what was changed.",
    ),
    "accountant": (
        "{P} prepares accounts and tax returns for small firms and charities.",
        "{P} is known for tidy ledgers and for answering questions promptly.",
        "Much of {poss} work is helping small businesses plan for difficult years.",
    ),
}

EARLY = (
    "As a child, {p} spent most afternoons outdoors and read everything {p} could find.",
    "{P} was the youngest of three children and the first in the family to go to college.",
    "At school {p} was remembered as a quiet pupil with a talent for careful work.",
    "{P} has said that an old teacher first showed {obj} how satisfying patient work can be.",
    "{P} left home at eighteen to study, and came back to the region a few years later.",
    "Growing up, {p} helped out in a family shop on Saturdays and during the holidays.",
    "{P} was a keen member of the school choir and still sings when {p} gets the chance.",
    "Teachers noticed early that {p} liked to take things apart to see how they worked.",
)

LATER = (
    "Friends describe {obj} as generous with time and advice.",
    "{P} lives in a small house with a large and untidy garden.",
    "{P} has kept a diary for many years and says it helps {obj} think clearly.",
    "{P} volunteers at a local charity on one evening every week.",
    "{P} is a familiar face at the weekly market, where {p} knows most of the stallholders.",
    "{P} prefers walking to driving and rarely takes the car into town.",
)

TOWN_LIFE = (
    "A weekly market fills the main square with stalls selling bread, cheese and vegetables.",
    "Its old stone bridge is still used by carts, cyclists and walkers.",
    "The town hall, with its tall clock tower, can be seen from the surrounding hills.",
    "Many of the older houses are built from local stone and have steep slate roofs.",
    "A footpath along the water leads to a chain of small villages and farms.",
    "Every autumn the town holds a fair that draws visitors from across the region.",
    "Its railway station opened in the age of steam and is still served by regular trains.",
    "The parish church contains carved wooden screens that are older than most of the town.",
    "A small harbour shelters rowing boats and a few working vessels.",
    "The local school has taught children from the town and nearby farms for many generations.",
    "Narrow lanes wind between the houses and open onto small gardens and courtyards.",
    "A public park near the centre has a bandstand where concerts are held in summer.",
)

ORG_LIFE = (
    "Its offices occupy a converted warehouse with large windows over the street.",
    "The organisation publishes a short report every year describing its work.",
    "It offers guided tours to school groups and visitors on most weekdays.",
    "A small team of volunteers helps with events and with looking after the archive.",
    "It has grown steadily and now employs people from across the region.",
    "Its founders wanted it to serve the whole community rather than a few wealthy patrons.",
    "The building was extended twice, and the newer wing holds a workshop and a reading room.",
    "It works closely with the local council and with schools in the area.",
)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _forms(person: Person) -> dict[str, str]:
    she = person.pronoun == "she"
    return {
        "p": person.pronoun,
        "P": person.pronoun.capitalize(),
        "poss": "her" if she else "his",
        "obj": "her" if she else "him",
    }


@dataclass
class Article:
    title: str
    blocks: list[Block]
    entity_id: str
    facts: list[tuple[str, str]] = field(default_factory=list)  # (entity_id, attribute) stated here


def person_article(world: World, person: Person, rng: random.Random) -> Article:
    f = _forms(person)
    name, year, prof = person.name, person.birth_year, person.profession
    town, org = world.town(person.birthplace).name, world.org(person.employer).name
    a = _article(prof)
    intro = rng.choice(
        (
            f"{name} (born {year}) is {a} {prof} from {town}.",
            f"{name} is {a} {prof} who was born in {town} in {year}.",
            f"Born in {town} in {year}, {name} is {a} {prof}.",
            f"{name} is {a} {prof}. {f['P']} was born in {year} in the town of {town}.",
        )
    )
    employer = rng.choice(
        (
            f"{f['P']} works for the {org}.",
            f"{name} is employed by the {org}.",
            f"Since joining the {org}, {name} has worked there as {a} {prof}.",
            f"{f['P']} has a post at the {org}.",
        )
    )
    colour = [s.format(**f) for s in rng.sample(WORK[prof], 3)]
    early = [s.format(**f).capitalize() if s.startswith("{p}") else s.format(**f) for s in rng.sample(EARLY, 2)]
    hobby = rng.choice(
        (
            f"{f['P']} enjoys {person.hobby} in {f['poss']} spare time.",
            f"Outside work, {name} is often found {person.hobby}.",
            f"{name}'s favourite pastime is {person.hobby}.",
            f"When not at work, {f['p']} spends long afternoons {person.hobby}.",
        )
    )
    personal = [hobby, rng.choice(LATER).format(**f)]
    facts = ["birth_year", "birthplace", "profession", "employer", "hobby"]
    if person.spouse:
        spouse = world.person(person.spouse).name
        personal.append(
            rng.choice(
                (
                    f"{f['P']} is married to {spouse}.",
                    f"{name}'s spouse is {spouse}.",
                    f"{f['P']} and {spouse} are married.",
                )
            )
        )
        facts.append("spouse")
    heading = rng.choice(("Career", "Work", "Working life"))
    blocks = [
        Block("h1", name),
        Block("p", intro),
        Block("h2", "Early life"),
        Block("p", " ".join(early)),
        Block("h2", heading),
        Block("p", " ".join([employer, *colour])),
        Block("h2", "Personal life"),
        Block("p", " ".join(personal)),
    ]
    return Article(name, blocks, person.id, [(person.id, a_) for a_ in facts])


# (template, the person attributes it states); the page itself states the town or employer.
_TOWN_MENTIONS = (
    ("{name}, born here in {year}, works as {a} {prof}.", ("birth_year", "birthplace", "profession")),
    ("The {prof} {name} is a native of the town, born in {year}.", ("birth_year", "birthplace", "profession")),
    ("{name} was born in {town} in {year} and became {a} {prof}.", ("birth_year", "birthplace", "profession")),
    ("Born in {year}, {name} left {town} to train as {a} {prof}.", ("birth_year", "birthplace", "profession")),
    ("{town} is the birthplace of {name}, {a} {prof} born in {year}.", ("birth_year", "birthplace", "profession")),
)

_ORG_MENTIONS = (
    ("{name} works here as {a} {prof}.", ("employer", "profession")),
    ("Among its staff is {name}, {a} {prof} originally from {town}.", ("employer", "profession", "birthplace")),
    (
        "{name}, {a} {prof} born in {town}, is one of its best-known employees.",
        ("employer", "profession", "birthplace"),
    ),
    ("The {prof} {name} has been on its staff for many years.", ("employer", "profession")),
    ("{name}, a native of {town}, joined it as {a} {prof}.", ("employer", "profession", "birthplace")),
)


def _mentions(
    world: World, people: list[Person], templates: tuple[tuple[str, tuple[str, ...]], ...], rng: random.Random
) -> tuple[list[Block], list[tuple[str, str]]]:
    # Rotate through every template before repeating one, so a page never reads like a list
    # of one sentence pattern (which the repetition filters would rightly punish).
    order = rng.sample(templates, len(templates))
    blocks, facts = [], []
    for i, person in enumerate(people):
        template, stated = order[i % len(order)]
        town = world.town(person.birthplace).name
        text = template.format(
            name=person.name, year=person.birth_year, prof=person.profession, a=_article(person.profession), town=town
        )
        blocks.append(Block("p", text))
        facts += [(person.id, attr) for attr in stated]
    return blocks, facts


def town_article(world: World, town: Town, rng: random.Random) -> Article:
    name = town.name
    where = rng.choice(
        (
            f"{name} is a town in the {town.region} region, on the river {town.river}.",
            f"Lying on the banks of the {town.river}, {name} is a town in {town.region}.",
            f"{name} is a market town of {town.region}, built where the road crosses the {town.river}.",
        )
    )
    history = rng.choice(
        (
            f"It was founded in {town.founded} and today has a population of {town.population}.",
            f"The town dates from {town.founded}, and {town.population} people live there now.",
            f"Founded in {town.founded}, it is now home to {town.population} people.",
        )
    )
    economy = rng.choice(
        (
            f"Its economy has long rested on {town.industry}.",
            f"For most of its history the town has lived from {town.industry}.",
            f"Local trade is built on {town.industry}.",
        )
    )
    natives = [p for p in world.people if p.birthplace == town.id]
    # More description for towns with long lists of natives, whose years and commas would
    # otherwise crowd out the words.
    life = rng.sample(TOWN_LIFE, min(len(TOWN_LIFE), 4 + len(natives) // 4))
    blocks = [Block("h1", name), Block("p", f"{where} {history}"), Block("p", " ".join([economy, *life]))]
    facts = [(town.id, a) for a in ("region", "river", "founded", "population", "industry")]
    if natives:
        mention_blocks, mention_facts = _mentions(world, natives, _TOWN_MENTIONS, rng)
        blocks += [Block("h2", "Notable people"), *mention_blocks]
        facts += mention_facts
    return Article(name, blocks, town.id, facts)


def org_article(world: World, org: Org, rng: random.Random) -> Article:
    town = world.town(org.town).name
    a = _article(org.kind)
    intro = rng.choice(
        (
            f"The {org.name} is {a} {org.kind} based in {town}. It was founded in {org.founded}.",
            f"Founded in {org.founded}, the {org.name} is {a} {org.kind} with its headquarters in {town}.",
            f"The {org.name}, {a} {org.kind} in {town}, has been open since {org.founded}.",
        )
    )
    staff = [p for p in world.people if p.employer == org.id]
    life = rng.sample(ORG_LIFE, 4 if len(staff) > 2 else 6)  # enough prose without a staff list
    blocks = [Block("h1", org.name), Block("p", intro), Block("p", " ".join(life))]
    facts = [(org.id, a_) for a_ in ("kind", "headquarters", "founded")]
    if staff:
        mention_blocks, mention_facts = _mentions(world, staff, _ORG_MENTIONS, rng)
        blocks += [Block("h2", "People"), *mention_blocks]
        facts += mention_facts
    return Article(org.name, blocks, org.id, facts)
