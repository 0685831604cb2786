"""What :mod:`tenure.adapters.zookeeper` learns from kazoo's callbacks: the signals of
waiters and observers, and the losses of its leading nodes.

Promises. A signal from :meth:`Watches.armed` fires on the next event delivered to its
election's ONE callback (:meth:`Watches.watch`, whatever node of the election a read
watched with it: a predecessor, the leader, the children while nobody leads) and on
every connection state change, since kazoo drops every watch on a disconnect. So a
waiter or observer that arms before the read that sets its watch never misses a later
change: it steps again and reads again. kazoo keeps a callback once per path (an
election's callbacks compare equal), so stepping again never stacks watches. A node
given to :meth:`Watches.lead` is reported through ``report_loss`` once -- when its
watch sees it deleted, when kazoo reports the session LOST, or when the re-read after a
reconnect finds it gone -- unless :meth:`Watches.forget` came first. That watch is the
ticket's ONE own-node watch, armed by :meth:`Watches.arm_own_async` once per connection
(:meth:`Watches.needs_arming`: kazoo drops watches on every disconnect, so each state
change starts a new epoch) and kept while the ticket waits and leads, so a step that
finds the ticket leading sends no request for it; it also records the node's deletion
(:meth:`Watches.seen_gone`) and rings the election's signals, so a waiter whose node
went steps again at once. And
:meth:`Watches.report_gone` reports again each held ticket no longer leading here (the
core drops a report made before it marked the ticket won). Reports and re-reads run on
worker threads, never on kazoo's.

Does not: read an election or decide anything. A signal may fire spuriously (another
waiter's or observer's watch in the same election, a state change); the caller then
just reads again.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from kazoo.client import KazooClient, KazooState
from kazoo.protocol.states import EventType, WatchedEvent

from tenure.adapters.zookeeper_connection import ZooKeeperConnection
from tenure.errors import StoreUnavailable
from tenure.store import EventSignal

if TYPE_CHECKING:
    from tenure.adapters.zookeeper import ZooKeeperTicket

Watch = Callable[[WatchedEvent], None]


def in_background(target: Callable[..., object], *args: object) -> None:
    """Runs ``target`` on a worker thread: kazoo's threads must never block."""
    threading.Thread(target=target, args=args, name="tenure-zookeeper", daemon=True).start()


class _Bell:
    """One election's watch callback and the signals armed on it."""

    def __init__(self, watches: Watches) -> None:
        self._watches = watches
        self.signals: set[EventSignal] = set()

    def watch(self, event: WatchedEvent) -> None:
        if self._watches.count(event) and event.type == EventType.DELETED:
            self._watches.deleted(event.path)
        self.ring()

    def ring(self) -> None:
        with self._watches.lock:
            signals = list(self.signals)
        for signal in signals:
            signal.fire()


class Watches:
    """The signals and leading-node watches of one store (see the module docstring)."""

    def __init__(self, conn: ZooKeeperConnection,
                 report_loss: Callable[[ZooKeeperTicket, str], None]) -> None:
        self.lock = threading.Lock()  # also taken on kazoo's threads, never across a call
        self._conn = conn
        self._report_loss = report_loss
        self._bells: dict[str, _Bell] = {}
        self.leading: dict[str, ZooKeeperTicket] = {}
        """Our leading nodes by path."""
        self._dropped: dict[ZooKeeperTicket, bool] = {}
        """Tickets taken out of :attr:`leading` by a loss (-> reported by report_gone
        yet): what :meth:`report_gone` looks at, so a renewal costs O(losses), not
        O(held)."""
        self._own: dict[str, tuple[ZooKeeperTicket, Watch]] = {}  # see _own_watch
        self._armed: dict[str, int] = {}  # node -> the epoch its own watch was sent in
        self._gone: set[str] = set()  # nodes whose own watch saw them deleted
        self.epoch = 0
        """Incremented on every connection state change (kazoo then drops every watch)."""
        self._parked: dict[str, tuple[str, Callable[[], None]]] = {}  # see park
        self._parked_at: dict[str, str] = {}  # ticket node -> the predecessor it waits on
        self.notifications = 0
        """Watch notifications received (not counting kazoo's disconnect events)."""

    # -- signals --------------------------------------------------------------------

    def _bell(self, election: str) -> _Bell:
        with self.lock:
            return self._bells.setdefault(election, _Bell(self))

    @contextlib.contextmanager
    def armed(self, election: str) -> Iterator[EventSignal]:
        """A signal of ``election`` armed before the block (which reads and sets the
        watch); closed if the block raises."""
        bell = self._bell(election)
        signal = EventSignal(on_close=lambda: self._disarm(bell, signal))
        with self.lock:
            bell.signals.add(signal)
        try:
            yield signal
        except BaseException:
            signal.close()
            raise

    def _disarm(self, bell: _Bell, signal: EventSignal) -> None:
        with self.lock:
            bell.signals.discard(signal)

    def watch(self, election: str) -> Watch:
        """The kazoo watch callback of ``election``."""
        return self._bell(election).watch

    def count(self, event: WatchedEvent) -> bool:
        """Counts a notification; False for kazoo's NONE event (a watch dropped on a
        disconnect), which is not one."""
        if event.type == EventType.NONE:
            return False
        with self.lock:
            self.notifications += 1
        return True

    def park(self, ticket: ZooKeeperTicket, predecessor: str,
             on_deleted: Callable[[], None]) -> None:
        """Calls ``on_deleted`` (on kazoo's callback thread, before the signals ring;
        it must not block) when the watch of ``election`` sees ``predecessor``
        deleted, once; a later :meth:`park` of ``ticket`` replaces it."""
        with self.lock:
            old = self._parked_at.pop(ticket.key, None)
            if old is not None:
                self._parked.pop(old, None)
            self._parked[predecessor] = (ticket.key, on_deleted)
            self._parked_at[ticket.key] = predecessor

    def unpark(self, ticket: ZooKeeperTicket) -> None:
        """Drops what :meth:`park` registered for ``ticket``."""
        with self.lock:
            old = self._parked_at.pop(ticket.key, None)
            if old is not None:
                self._parked.pop(old, None)

    def deleted(self, path: str) -> None:
        """An election watch saw ``path`` deleted: runs what was parked on it."""
        with self.lock:
            found = self._parked.pop(path, None)
            if found is not None:
                self._parked_at.pop(found[0], None)
        if found is not None:
            found[1]()

    # -- leading nodes --------------------------------------------------------------

    def lead(self, ticket: ZooKeeperTicket) -> None:
        """Treats ``ticket`` as leading from now on (no request: its own watch is armed
        by :meth:`arm_own_async`); registered before the read that decides, so a
        deletion its watch sees is a loss whenever the caller then keeps ``ticket``.
        The caller forgets it if it does not lead after all."""
        with self.lock:
            self.leading[ticket.key] = ticket
            self._dropped.pop(ticket, None)

    def needs_arming(self, ticket: ZooKeeperTicket) -> bool:
        """True unless ``ticket``'s own watch was sent on the current connection."""
        with self.lock:
            return self._armed.get(ticket.key) != self.epoch

    def arm_own_async(self, zk: KazooClient, ticket: ZooKeeperTicket) -> Any:
        """Sends ``exists`` with ``ticket``'s own watch; returns kazoo's pending answer
        (its stat; None: the node is gone). The caller sends it with its read."""
        watch = self._own_watch(ticket)
        with self.lock:
            self._armed[ticket.key] = self.epoch  # a state change after this re-arms
        return zk.exists_async(ticket.key, watch)

    def seen_gone(self, ticket: ZooKeeperTicket) -> bool:
        """True once ``ticket``'s own watch saw its node deleted."""
        with self.lock:
            return ticket.key in self._gone

    def _own_watch(self, ticket: ZooKeeperTicket) -> Watch:
        """The one watch callback of ``ticket``'s node: the same object on every step,
        so kazoo (a set of callbacks per path) never stacks them."""
        with self.lock:
            found = self._own.get(ticket.key)
            if found is not None and found[0] is ticket:
                return found[1]

        def watch(event: WatchedEvent) -> None:
            if not self.count(event):
                return  # dropped on a disconnect: the new epoch re-arms
            bell = None
            with self.lock:
                found = self._own.get(ticket.key)
                if found is None or found[0] is not ticket:
                    return  # withdrawn (our own delete), or a new session's
                self._armed.pop(ticket.key, None)  # a watch fires once
                leading = self.leading.get(ticket.key) is ticket
                if event.type != EventType.CHANGED:  # a sequential path never recurs
                    del self._own[ticket.key]
                    self._gone.add(ticket.key)
                    bell = self._bells.get(ticket.election)
            if event.type == EventType.CHANGED:  # a proclaim: re-arm (a waiter: its next step)
                if leading:
                    in_background(self._recheck, [ticket])
            elif leading:  # on_lost callbacks must not hold up kazoo's callback thread
                in_background(self.forget, ticket, "its ZooKeeper node was deleted (session "
                              "expired, or removed by another client)")
            elif bell is not None:  # a waiter's node went: it steps again and sees it
                bell.ring()

        with self.lock:
            self._own[ticket.key] = (ticket, watch)
        return watch

    def withdrawn(self, ticket: ZooKeeperTicket) -> None:
        """Forgets ``ticket`` for good (its node is being deleted by us)."""
        self.forget(ticket)
        self.unpark(ticket)
        with self.lock:
            self._own.pop(ticket.key, None)
            self._armed.pop(ticket.key, None)
            self._gone.discard(ticket.key)

    def forget(self, ticket: ZooKeeperTicket, loss: str = "") -> None:
        """Stops treating ``ticket`` as leading; reports ``loss`` if it still was."""
        with self.lock:
            if self.leading.get(ticket.key) is not ticket:
                return  # withdrawn by us, or already reported
            del self.leading[ticket.key]
            if loss:  # else it is not leading after all, or withdrawn: never held
                self._dropped.setdefault(ticket, False)
        if loss:
            self._report_loss(ticket, loss)

    def retain(self, session: int | None) -> None:
        """Silently forgets the leading nodes of every other session (None: all)."""
        with self.lock:
            for key in [k for k, t in self.leading.items() if t.owner != session]:
                self._dropped.setdefault(self.leading.pop(key), False)
            for key in [k for k, (t, _) in self._own.items() if t.owner != session]:
                del self._own[key]
                self._armed.pop(key, None)
                self._gone.discard(key)

    def report_gone(self, held: Collection[ZooKeeperTicket]) -> None:
        """Reports each of ``held`` no longer leading here (its node seen gone, perhaps
        before the core marked it won, when the first report was not applied). Looks
        only at the tickets a loss took out of :attr:`leading` (every removal but a
        withdrawal or a step that did not lead), not at every held one."""
        with self.lock:
            gone = []
            for ticket, reported in list(self._dropped.items()):
                if ticket.withdrawn or (reported and ticket not in held):
                    del self._dropped[ticket]  # done with (or the core dropped it)
                elif ticket in held and self.leading.get(ticket.key) is not ticket:
                    gone.append(ticket)
                    self._dropped[ticket] = True
        self._report(gone, "its ZooKeeper node was deleted")

    def _report(self, tickets: Iterable[ZooKeeperTicket], reason: str) -> None:
        for ticket in tickets:
            self._report_loss(ticket, reason)

    def state_changed(self, state: str) -> None:
        """kazoo's state listener (on its connection thread: must not block)."""
        with self.lock:
            self.epoch += 1
            bells = list(self._bells.values())
            leading = list(self.leading.values())
            if state == KazooState.LOST:
                for ticket in leading:
                    self._dropped.setdefault(ticket, False)
                self.leading.clear()
        for bell in bells:  # every waiter and observer steps again, so reads again
            bell.ring()
        if state == KazooState.LOST and leading:  # the core's reporter runs on_lost
            in_background(self._report, leading, "the ZooKeeper session expired")
        elif state == KazooState.CONNECTED and leading:  # kazoo dropped their watches
            in_background(self._recheck, leading)

    def _recheck(self, tickets: Iterable[ZooKeeperTicket]) -> None:
        """Re-reads and re-watches leading nodes; one gone is a loss."""
        zk = self._conn.current
        with contextlib.suppress(StoreUnavailable):  # disconnected again: the next reconnect
            for ticket in tickets:
                if zk is not None and self._conn.call(self.arm_own_async, zk, ticket) is None:
                    self.forget(ticket, "its ZooKeeper node was deleted")


__all__ = ["Watch", "Watches", "in_background"]
