"""The fictional world: unambiguous facts, deterministic from a seed, unknown names kept apart."""

from __future__ import annotations

from collections import Counter

import pytest

from tasks import world


def test_same_seed_same_world_and_other_seed_differs():
    assert world.build_world(3, 50) == world.build_world(3, 50)
    assert world.build_world(3, 50).people != world.build_world(4, 50).people


@pytest.mark.parametrize("people", [1, 7, 120, 2000])
def test_names_are_unique_and_facts_single_valued(people):
    w = world.build_world(0, people)
    assert len(w.people) == people
    names = [e.name for e in (*w.people, *w.towns, *w.orgs)]
    assert len(set(names)) == len(names)
    assert (len(w.towns), len(w.orgs)) == world.sizes(people)
    for p in w.people:
        facts = w.facts(p.id)
        assert facts["birthplace"] in {t.name for t in w.towns} and facts["employer"] in {o.name for o in w.orgs}
        if p.spouse:
            assert w.person(p.spouse).spouse == p.id and p.spouse != p.id


def test_about_four_in_ten_are_married():
    w = world.build_world(0, 500)
    married = sum(p.spouse is not None for p in w.people)
    assert married % 2 == 0 and 0.3 < married / 500 < 0.5


def test_unknown_names_share_no_first_name_or_surname_with_the_world():
    w = world.build_world(0, 2000)
    known_first = {p.name.split()[0] for p in w.people}
    known_last = {p.name.split()[1] for p in w.people}
    assert len(w.unknown_names) == 40 and len(set(w.unknown_names)) == 40
    for name in w.unknown_names:
        first, last = name.split()
        assert first not in known_first and last not in known_last
    assert Counter(n.split()[1] for n in w.unknown_names).most_common(1)[0][1] <= 6


def test_bad_size_is_a_clear_error():
    with pytest.raises(ValueError, match="people must be"):
        world.build_world(0, 0)
