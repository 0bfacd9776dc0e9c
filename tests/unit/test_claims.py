"""`ClaimIndex`: the explorer's claim queries answered from lists kept in (height, tx hash)
order. Hypothesis drives random histories of puts, replacements and removals against a plain
filter-and-sort over every record (what `Application.claims` did before the index), and the
application's index is checked to come back the same from the store after a restart."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authchain.chain import queries
from authchain.chain.claims import ClaimIndex, ClaimRecord, ClaimStatus
from authchain.chain.errors import InvalidField
from authchain.chain.schemas import ClaimQuery
from authchain.chain.storage.mem import MemBlockStore
from authchain.chain.types import AccountId, Aid, TxHash
from tests.support.chain import OWNER, T0, VALIDATOR, FakeVerifier, aid, make_engine, register

AIDS = [str(Aid(bytes([n]) * 32)) for n in range(4)]
OWNERS = [str(AccountId(bytes([n + 50]) * 32)) for n in range(3)]
STATUSES: list[ClaimStatus] = ["committed", "rejected"]

records = st.builds(
    ClaimRecord,
    aid=st.sampled_from(AIDS),
    owner=st.sampled_from(OWNERS),
    height=st.integers(0, 6),
    status=st.sampled_from(STATUSES),
    parents=st.lists(st.sampled_from(AIDS), max_size=2, unique=True).map(tuple),
)
tx_hashes = st.integers(0, 9).map(lambda n: TxHash(bytes([n]) * 31 + bytes([n * 7 % 256])))
steps = st.lists(
    st.one_of(
        st.tuples(st.just("put"), tx_hashes, records), st.tuples(st.just("remove"), tx_hashes)
    ),
    max_size=40,
)
filters = st.fixed_dictionaries(
    {},
    optional={
        "aid": st.sampled_from(AIDS), "parent": st.sampled_from(AIDS),
        "owner": st.sampled_from(OWNERS), "status": st.sampled_from(STATUSES),
    },
)  # fmt: skip


def naive(
    everything: dict[TxHash, ClaimRecord], query: dict[str, str], limit: int
) -> list[tuple[TxHash, ClaimRecord]]:
    """Every record through every filter, sorted newest first: the index's specification."""
    found = [
        (h, r)
        for h, r in everything.items()
        if query.get("aid", r.aid) == r.aid
        and query.get("owner", r.owner) == r.owner
        and query.get("status", r.status) == r.status
        and ("parent" not in query or query["parent"] in r.parents)
    ]
    found.sort(key=lambda item: (item[1].height, bytes(item[0])), reverse=True)
    return found[:limit]


@settings(max_examples=300, deadline=None)
@given(steps, st.lists(filters, min_size=1, max_size=6), st.integers(1, 12))
def test_the_index_answers_as_a_scan_of_every_record_would(
    history: list[tuple[Any, ...]], asked: list[dict[str, str]], limit: int
) -> None:
    index = ClaimIndex()
    truth: dict[TxHash, ClaimRecord] = {}
    for step in history:
        if step[0] == "put":
            index.put(step[1], step[2])
            truth[step[1]] = step[2]
        else:
            index.remove(step[1])
            truth.pop(step[1], None)
    assert len(index) == len(truth)
    reloaded = ClaimIndex(truth.items())  # a node's start: bulk load from the store
    for query in asked:
        expected = naive(truth, query, limit)
        assert index.find(**query, limit=limit) == expected  # type: ignore[arg-type]
        assert reloaded.find(**query, limit=limit) == expected  # type: ignore[arg-type]


async def test_a_restarted_node_answers_the_same_claims_from_its_store() -> None:
    store = MemBlockStore()
    verifier = FakeVerifier(failing={aid(2)}, lineage={aid(3): (aid(1),)})
    engine = make_engine(verifier, store=store, cap=4)
    engine.submit_tx(register(1, 0))
    engine.submit_tx(register(2, 1))
    await engine.propose_block(VALIDATOR, T0 + 5_000)
    engine.submit_tx(register(3, 1))
    await engine.propose_block(VALIDATOR, T0 + 10_000)
    before = queries.claims(engine.app, ClaimQuery())
    assert [c["status"] for c in before] == ["committed", "committed", "rejected"]

    again = make_engine(verifier, store=store, cap=4).app
    assert queries.claims(again, ClaimQuery()) == before
    assert [c["aid"] for c in queries.claims(again, ClaimQuery(parent=aid(1)))] == [str(aid(3))]
    assert queries.claims(again, ClaimQuery(owner=OWNER.account, status="rejected")) == before[2:]


@given(
    st.builds(
        ClaimQuery,
        aid=st.none() | st.binary(min_size=32, max_size=32).map(Aid),
        parent=st.none() | st.binary(min_size=32, max_size=32).map(Aid),
        owner=st.none() | st.binary(min_size=32, max_size=32).map(AccountId),
        status=st.sampled_from([None, "pending", "committed", "rejected"]),
        limit=st.integers(1, 100),
    )
)
def test_a_claim_query_reads_back_what_it_writes(query: ClaimQuery) -> None:
    """The node RPC, the ABCI path and the gateway share one ClaimQuery: its URL parameters
    read back to the same query."""
    assert ClaimQuery.from_params(query.params()) == query
    assert query.path().startswith("/claims?")


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "x"}, "limit"),
     ({"status": "lost"}, "status"), ({"aid": "zz"}, "aid"), ({"owner": "00"}, "owner"),
     ({"parent": "11" * 31}, "parent"), ({"colour": "red"}, "colour")],
)  # fmt: skip
def test_a_bad_claim_query_names_its_parameter(params: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidField) as err:
        ClaimQuery.from_params(params)
    assert err.value.field == field
