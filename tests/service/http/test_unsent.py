"""unsent.py: the cap on what waits in full send buffers drops the connections that have waited longest."""

from service.http.unsent import Unsent


class Client:
    def __init__(self, name: str, dropped: list[str]) -> None:
        self.name = name
        self.dropped = dropped

    def drop(self, why: str) -> None:
        self.dropped.append(self.name)


def test_past_the_cap_the_longest_waiting_go_first_and_one_alone_is_never_dropped():
    dropped: list[str] = []
    a, b, c, d = (Client(name, dropped) for name in "abcd")
    unsent = Unsent(limit=100)
    unsent.add(a, 500)  # alone: over the cap, but one answer is bounded by VAE_MAX_RESPONSE_BYTES instead
    assert dropped == [] and unsent.total == 500
    unsent.add(b, 40)
    assert dropped == ["a"] and unsent.total == 40
    unsent.add(c, 40)
    unsent.remove(b)  # b's client read its answer
    unsent.add(b, 30)  # and filled its buffer again: now the newest
    unsent.add(d, 40)
    assert dropped == ["a", "c"] and unsent.total == 70 and list(unsent.waiting) == [b, d]


def test_a_connection_counted_twice_replaces_its_count():
    unsent = Unsent(limit=100)
    client = Client("a", [])
    unsent.add(client, 60)
    unsent.add(client, 70)
    assert unsent.total == 70
    unsent.remove(client)
    unsent.remove(client)
    assert unsent.total == 0 and not unsent.waiting
