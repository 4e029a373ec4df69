"""Identity resolution: a batch of (event_id, keys) -> canonical customer ids and graph changes."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.identity.resolve import NAMESPACE, Link, Resolution, new_customer_id, resolve

A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"
C = "33333333-3333-4333-8333-333333333333"
ANN, ANN_PHONE, ANN_CRM = "email:ann@example.com", "phone:+447456767967", "ext:crm:C1"
BOB = "email:bob@example.com"

Known = dict[str, tuple[str, str]]


def uuid5(key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, key))


def test_new_customer_gets_the_uuid5_of_its_first_key() -> None:
    res = resolve([("e1", [ANN, ANN_PHONE])], {})
    cid = uuid5(ANN)
    assert res == Resolution(assigned=[cid], new_customers=[cid],
                             new_keys={ANN: cid, ANN_PHONE: cid}, links=[])
    assert str(uuid.UUID(cid)) == cid


def test_new_customer_id_is_the_same_on_every_run() -> None:
    first = resolve([("e1", [ANN, ANN_PHONE])], {})
    again = resolve([("other-event", [ANN, ANN_PHONE])], {})
    assert first.assigned == again.assigned == [new_customer_id([ANN, ANN_PHONE])]
    # Pinned: a replay of the raw log, by any later version of the code, gives the same ids.
    assert new_customer_id([ANN]) == "16872c83-aa98-5e5a-bb4b-3e2b885a374c"


def test_customer_id_key_is_used_as_the_new_id() -> None:
    res = resolve([("e1", [f"id:{A}", ANN])], {})
    assert (res.assigned, res.new_customers) == ([A], [A])
    assert res.new_keys == {f"id:{A}": A, ANN: A}
    assert new_customer_id([ANN, f"id:{B}"]) == B  # wherever the id key is


def test_known_key_resolves_to_its_canonical_customer() -> None:
    res = resolve([("e1", [ANN])], {ANN: (A, A)})
    assert res == Resolution(assigned=[A])


def test_key_of_a_merged_customer_resolves_to_the_survivor() -> None:
    assert resolve([("e1", [ANN])], {ANN: (B, A)}).assigned == [A]


def test_new_keys_next_to_one_known_key_are_added_to_the_known_customer() -> None:
    res = resolve([("e1", [ANN, ANN_PHONE, ANN_CRM])], {ANN_PHONE: (B, B)})
    assert res.assigned == [B]
    assert res.new_customers == [] and res.links == []
    assert res.new_keys == {ANN: B, ANN_CRM: B}


def test_event_with_keys_of_two_known_customers_links_them_into_the_smallest_id() -> None:
    known: Known = {ANN: (B, B), BOB: (A, A)}
    keys = [ANN, BOB, ANN_CRM]
    res = resolve([("e1", keys)], known)
    assert res.assigned == [A]
    assert res.links == [Link(survivor=A, merged=B, event_id="e1", keys=tuple(keys))]
    assert res.new_keys == {ANN_CRM: A}
    assert res.new_customers == []
    # The survivor does not depend on the order of the keys.
    assert resolve([("e1", [BOB, ANN])], known).links == [Link(A, B, "e1", (BOB, ANN))]


def test_keys_of_one_customer_twice_do_not_link() -> None:
    res = resolve([("e1", [ANN, ANN_PHONE])], {ANN: (B, A), ANN_PHONE: (A, A)})
    assert (res.assigned, res.links) == ([A], [])


def test_event_with_keys_of_three_customers_links_both_into_the_survivor() -> None:
    res = resolve([("e1", [ANN, BOB, ANN_CRM])], {ANN: (C, C), BOB: (B, B), ANN_CRM: (A, A)})
    assert res.assigned == [A]
    assert [(link.survivor, link.merged) for link in res.links] == [(A, B), (A, C)]


def test_link_later_in_a_batch_rewrites_earlier_assignments_to_the_survivor() -> None:
    batch = [
        ("e1", [f"id:{B}", ANN]),   # new customer B
        ("e2", [f"id:{A}", BOB]),   # new customer A
        ("e3", [ANN]),              # B again
        ("e4", [ANN, BOB]),         # one touchpoint carries both: B is linked into A
        ("e5", [ANN_PHONE, ANN]),   # after the link: A, and the new key goes to A
    ]
    res = resolve(batch, {})
    assert res.assigned == [A, A, A, A, A]
    assert res.new_customers == [B, A]
    assert res.links == [Link(A, B, "e4", (ANN, BOB))]
    # Keys stay with the customer that first had them; only the canonical pointer moves.
    assert res.new_keys == {f"id:{B}": B, ANN: B, f"id:{A}": A, BOB: A, ANN_PHONE: A}


def test_link_inside_a_batch_with_a_known_customer() -> None:
    res = resolve([("e1", [BOB]), ("e2", [BOB, ANN])], {ANN: (A, A)})
    assert res.assigned == [A, A]
    assert res.links == [Link(A, uuid5(BOB), "e2", (BOB, ANN))]


def test_chains_resolve_to_the_root() -> None:
    # C was merged into B, then B into A; `known` carries the chain as the store loads it.
    known: Known = {ANN: (C, B), f"~{B}": (B, A), f"~{A}": (A, A)}
    assert resolve([("e1", [ANN])], known).assigned == [A]


def test_chains_made_inside_a_batch_resolve_to_the_root() -> None:
    known: Known = {ANN: (C, C), BOB: (B, B), ANN_CRM: (A, A)}
    res = resolve([("e1", [ANN, BOB]), ("e2", [BOB, ANN_CRM]), ("e3", [ANN])], known)
    assert res.links == [Link(B, C, "e1", (ANN, BOB)), Link(A, B, "e2", (BOB, ANN_CRM))]
    assert res.assigned == [A, A, A]


def test_id_key_of_a_merged_customer_resolves_to_the_survivor() -> None:
    # C was merged into A, and a channel sends C's id without C's id key being in the graph.
    res = resolve([("e1", [f"id:{C}"]), ("e2", [ANN])], {ANN: (C, A), f"~{A}": (A, A)})
    assert res.assigned == [A, A]
    assert res.new_customers == []
    assert res.new_keys == {f"id:{C}": C}


def test_id_key_of_a_customer_merged_earlier_in_the_batch_resolves_to_the_survivor() -> None:
    ann, bob = uuid5(ANN), uuid5(BOB)
    survivor, merged = sorted([ann, bob])
    batch = [("e1", [ANN]), ("e2", [BOB]), ("e3", [ANN, BOB]), ("e4", [f"id:{merged}"]),
             ("e5", [ANN]), ("e6", [BOB])]
    res = resolve(batch, {})
    assert res.assigned == [survivor] * 6
    assert res.new_customers == [ann, bob]
    assert res.links == [Link(survivor, merged, "e3", (ANN, BOB))]


def test_empty_batch_changes_nothing() -> None:
    assert resolve([], {ANN: (A, A)}) == Resolution()


# -- properties ---------------------------------------------------------------------------------

# Includes the id a customer first seen by email was given: channels learn ids from the API and
# send them back, so an ``id:`` key may name a customer that exists without that key.
KEYS = [f"id:{A}", f"id:{B}", f"id:{C}", ANN, ANN_PHONE, ANN_CRM, BOB, "phone:+15550100",
        "ext:pos:9", f"id:{uuid5(ANN)}", f"id:{uuid5(BOB)}"]
BATCH = st.lists(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True),
                 max_size=10).map(lambda ks: [(f"e{i}", keys) for i, keys in enumerate(ks)])


class Graph:
    """The identity graph as ``projections.identity.store`` keeps it, in memory."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.canonical: dict[str, str] = {}

    def known(self, keys: list[str]) -> Known:
        found = {k: (self.keys[k], self.canonical[self.keys[k]]) for k in keys if k in self.keys}
        for c, cc in list(found.values()):
            while cc != c:
                c, cc = cc, self.canonical[cc]
                found[f"~{c}"] = (c, cc)
        return found

    def save(self, res: Resolution) -> None:
        for c in res.new_customers:
            self.canonical.setdefault(c, c)
        for k, c in res.new_keys.items():
            self.keys.setdefault(k, c)
        for link in res.links:
            for c, cc in list(self.canonical.items()):
                if cc == link.merged:
                    self.canonical[c] = link.survivor

    def root(self, key: str) -> str:
        c = self.keys[key]
        while self.canonical[c] != c:
            c = self.canonical[c]
        return c

    def run(self, batch: list[tuple[str, list[str]]]) -> Resolution:
        res = resolve(batch, self.known(sorted({k for _, ks in batch for k in ks})))
        self.save(res)
        return res


@settings(max_examples=200)
@given(BATCH)
def test_each_event_is_assigned_the_root_of_its_keys_after_the_batch(batch: list) -> None:
    graph = Graph()
    res = graph.run(batch)
    assert len(res.assigned) == len(batch)
    for (_, keys), cid in zip(batch, res.assigned, strict=True):
        assert {graph.root(k) for k in keys} == {cid}
    assert res.assigned == resolve(batch, {}).assigned  # deterministic


@settings(max_examples=200)
@given(BATCH, st.data())
def test_the_graph_does_not_depend_on_where_batches_are_cut(batch: list, data) -> None:
    at = data.draw(st.integers(0, len(batch)))
    whole, pieces = Graph(), Graph()
    whole.run(batch)
    pieces.run(batch[:at])
    pieces.run(batch[at:])
    assert {k: whole.root(k) for k in whole.keys} == {k: pieces.root(k) for k in pieces.keys}
