"""A state machine of the buffer against a model: append, fetch, acknowledge, crash, reopen."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import event as note_event
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from buffer.store import EventBuffer, EventDraft
from contract.wire import Event, EventKind, Lane
from tests.buffer.helpers import T0, copy_as_killed

KINDS = [
    EventKind.SOS,
    EventKind.SOS_RESTORE,
    EventKind.SMOKE,
    EventKind.LOW_BATTERY,
    EventKind.TAMPER_RESTORE,
    EventKind.MOTION,
    EventKind.BATTERY,
]

drafts_st = st.lists(
    st.builds(
        lambda kind, device, pad: EventDraft(
            kind=kind,
            at=T0,
            device_id=f"d{device}",
            payload={"condition": f"{kind.condition.value}:d{device}", "pad": "p" * pad},
        ),
        st.sampled_from(KINDS),
        st.integers(0, 3),
        st.sampled_from([0, 10, 900, 2500]),
    ),
    min_size=1,
    max_size=12,
)


class BufferMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="buffer-machine-"))
        self.generation = 0
        self.buffer: EventBuffer | None = None
        self.model: dict[str, Event] = {}
        self.acked: set[str] = set()
        self.fetched: list[Event] = []
        self.last_seq = -1

    @initialize(budget=st.sampled_from([64 * 1024, 256 * 2**20]))
    def open_buffer(self, budget: int) -> None:
        self.budget = budget
        self.buffer = EventBuffer.open(self.path, gateway_id="gw-m", disk_budget_bytes=budget)

    @property
    def path(self) -> Path:
        return self.dir / f"gen{self.generation}" / "buffer.db"

    @precondition(lambda self: len(self.model) < 600)
    @rule(drafts=drafts_st)
    def append(self, drafts: list[EventDraft]) -> None:
        assert self.buffer is not None
        events = self.buffer.append(drafts)
        assert [e.kind for e in events] == [d.kind for d in drafts]
        seqs = [e.seq for e in events]
        assert seqs == sorted(seqs)
        assert seqs[0] > self.last_seq
        self.last_seq = seqs[-1]
        for event in events:
            self.model[event.id] = event

    @rule(max_events=st.integers(1, 60))
    def fetch(self, max_events: int) -> None:
        assert self.buffer is not None
        batch = self.buffer.pending(max_events=max_events)
        assert 1 <= len(batch) <= max_events or not self._unacked_present()
        for event in batch:
            assert event.id not in self.acked, "an acknowledged event came back"
        self.fetched = batch

    @rule(data=st.data())
    def acknowledge(self, data: st.DataObject) -> None:
        assert self.buffer is not None
        if not self.fetched:
            return
        chosen = data.draw(st.lists(st.sampled_from(self.fetched), unique_by=lambda e: e.id))
        self.buffer.acknowledge([e.id for e in chosen])
        self.acked.update(e.id for e in chosen)

    @rule()
    def crash(self) -> None:
        """The process dies: the files are as a kill -9 leaves them; nothing is closed first."""
        assert self.buffer is not None
        old_path, old = self.path, self.buffer
        self.generation += 1
        copy_as_killed(old_path, self.path)
        old.close()  # only to free the old copy; the new one never saw this
        self.buffer = EventBuffer.open(self.path, gateway_id="gw-m", disk_budget_bytes=self.budget)
        self.fetched = []

    @rule()
    def reopen(self) -> None:
        assert self.buffer is not None
        self.buffer.close()
        self.buffer = EventBuffer.open(self.path, gateway_id="gw-m", disk_budget_bytes=self.budget)

    def _unacked_present(self) -> list[Event]:
        assert self.buffer is not None
        return self.buffer.pending(max_events=1000, max_bytes=2**40)

    @invariant()
    def matches_the_model(self) -> None:
        if self.buffer is None:
            return
        present = self._unacked_present()
        ids = [e.id for e in present]
        assert len(ids) == len(set(ids))
        # Lane order, then seq.
        keys = [(e.lane.rank, e.seq) for e in present]
        assert keys == sorted(keys)
        for event in present:
            assert event.id not in self.acked, "an acknowledged event is still pending"
            if event.id not in self.model:
                # Only the buffer's own eviction reports appear unasked.
                assert event.kind is EventKind.BUFFER_EVICTED
                self.model[event.id] = event
            else:
                assert event == self.model[event.id]
        present_ids = set(ids)
        missing = [
            e for e in self.model.values() if e.id not in self.acked and e.id not in present_ids
        ]
        stats = self.buffer.stats(T0)
        assert all(e.lane is not Lane.ALARM for e in missing), "an alarm was lost"
        assert all(e.kind is not EventKind.BUFFER_EVICTED for e in missing)
        assert len(missing) <= stats.evicted_total
        note_event("evicted" if stats.evicted_total else "nothing evicted")
        if self.budget > 2**20:
            assert not missing
        # Eviction takes the oldest first: in each lane, what is gone precedes what is left.
        for lane in (Lane.TROUBLE, Lane.TELEMETRY):
            gone = [e.seq for e in missing if e.lane is lane]
            left = [e.seq for e in present if e.lane is lane and e.kind != EventKind.BUFFER_EVICTED]
            if gone and left:
                assert max(gone) < min(left)
        assert stats.depth == {lane: sum(e.lane is lane for e in present) for lane in Lane}

    def teardown(self) -> None:
        if self.buffer is not None:
            self.buffer.close()
        shutil.rmtree(self.dir, ignore_errors=True)


BufferMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBufferMachine = BufferMachine.TestCase
