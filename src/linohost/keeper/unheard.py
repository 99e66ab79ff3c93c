"""Messages of a just-woken live site that nobody could hear yet (runs in the worker).

A request that wakes a sleeping Noi site may notify a user whose open tab waits at
the keeper's porch (:mod:`linohost.keeper.porch`): the porch hands the tab's websocket
to the new worker a moment after the worker started, and the request may send its
notification before that. Channels drops a message to a group with no member. So the
worker's channel layer keeps, for :data:`KEEP_FOR` seconds, what it sent to a group
none of its websockets had joined, and gives it to the first websocket that joins.
Only this worker's own messages are kept (another process's go through Redis alone).
"""

import collections
import threading
import time

#: Seconds an unheard message waits for its group's first websocket.
KEEP_FOR = 30
#: Messages kept at most (the oldest go first).
MAX_KEPT = 200


class Unheard:
    """Wraps *layer* (a channels layer) in place: its ``group_add``, ``group_discard``
    and ``group_send``. Membership is this worker's: every websocket of the site is
    served by it."""

    def __init__(self, layer, clock=time.monotonic):
        self.layer, self.clock = layer, clock
        self.members = collections.defaultdict(set)
        self.kept = collections.deque(maxlen=MAX_KEPT)      # (when, group, message)
        self.replayed = 0
        self.lock = threading.Lock()    # group_send also comes from the request threads
        self._add, self._discard, self._send = layer.group_add, layer.group_discard, layer.group_send
        layer.group_add, layer.group_discard, layer.group_send = (
            self.group_add, self.group_discard, self.group_send)

    async def group_send(self, group, message):
        if not self.members.get(group):
            with self.lock:
                self.kept.append((self.clock(), group, message))
        await self._send(group, message)

    async def group_add(self, group, channel):
        await self._add(group, channel)
        first = not self.members[group]
        self.members[group].add(channel)
        if first:
            now = self.clock()
            with self.lock:
                mine = [m for when, g, m in self.kept if g == group and now - when <= KEEP_FOR]
                others = [k for k in self.kept if k[1] != group and now - k[0] <= KEEP_FOR]
                self.kept.clear()
                self.kept.extend(others)
            for message in mine:
                await self.layer.send(channel, message)
                self.replayed += 1

    async def group_discard(self, group, channel):
        self.members[group].discard(channel)
        if not self.members[group]:
            del self.members[group]
        await self._discard(group, channel)
