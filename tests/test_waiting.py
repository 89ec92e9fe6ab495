"""The adaptive poll (spin=None, consumers' and producers' default): the
window it polls for before sleeping follows how soon recent sleeps ended
(docs/design.md, "Waiting")."""
from shmring import _core

US = 1_000


def windows(waits, start=0):
    out, w = [], start
    for waited in waits:
        w = _core.poll_window(w, waited)
        out.append(w)
    return out


def test_short_sleeps_grow_the_window_to_its_cap():
    assert windows([110 * US] * 8) == [2 * US, 4 * US, 8 * US, 16 * US, 32 * US, 64 * US,
                                       64 * US, 64 * US]


def test_long_sleeps_shrink_it_to_nothing():
    assert windows([250 * US] * 7, start=64 * US) == [32 * US, 16 * US, 8 * US, 4 * US,
                                                      2 * US, 0, 0]


def test_a_sleep_of_exactly_the_useful_bound_still_grows_and_one_past_it_shrinks():
    assert windows([200 * US], start=4 * US) == [8 * US]
    assert windows([200 * US + 1], start=4 * US) == [2 * US]


def test_a_consumer_that_waits_long_ends_up_sleeping_at_once():
    """From the cap, a few sleeps that ran to the wait slice leave no poll."""
    assert windows([100_000 * US] * 6, start=64 * US)[-1] == 0


def test_spin_none_is_the_default_of_producers_and_travels_with_a_pickled_one(ring):
    """A pickled producer unpickles as a new one with the same settings."""
    for kwargs, spin in (({}, None), ({"spin": None}, None), ({"spin": 0}, 0), ({"spin": 7}, 7)):
        with ring.producer(**kwargs) as p:
            assert p.__reduce__()[1][1] == spin
