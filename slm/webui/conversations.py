"""Chat conversations kept on the server, each in its owner's own namespace: a conversation is found by
(owner, session) and every accessor takes the owner, so no session id a client sends reaches another's."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from slm.types import Answer

# Conversations live in memory only (a restart forgets them, as a page reload does). Both caps bound
# that memory whatever clients send; the least recently used conversation goes first.
MAX_CONVERSATIONS = 2000  # a few MB at ~1 KB of text per entry: far above the concurrent users of one chat
MAX_CONVERSATIONS_PER_OWNER = 20  # one user opening tabs (or sending fresh session ids) evicts only their own
MAX_ENTRIES = 100  # questions kept per conversation; older ones drop off (their answers are in the audit log)


@dataclass(frozen=True)
class Owner:
    """Who a conversation belongs to: the authenticated user and the browser (a random server-set cookie,
    so the one `local` user of the no-login mode still has one namespace per browser)."""

    user: str
    browser: str = ""


@dataclass
class Entry:
    """One question of the conversation and what came back (an Answer, or an error to show)."""

    question: str
    answer: Answer | None = None
    error: str | None = None
    feedback: list[int] = field(default_factory=list)  # ids of feedback rows about this answer


class ConversationStore:
    """Thread-safe, bounded map (owner, session) -> entries; a missing conversation reads as empty."""

    def __init__(
        self,
        *,
        max_conversations: int = MAX_CONVERSATIONS,
        max_per_owner: int = MAX_CONVERSATIONS_PER_OWNER,
        max_entries: int = MAX_ENTRIES,
    ):
        self.max_conversations, self.max_per_owner, self.max_entries = max_conversations, max_per_owner, max_entries
        self._items: OrderedDict[tuple[Owner, str], list[Entry]] = OrderedDict()
        self._lock = threading.Lock()

    def entries(self, owner: Owner, session: str) -> list[Entry]:
        """A copy of the owner's entries in `session` (the Entry objects are shared, the list is not)."""
        with self._lock:
            found = self._items.get((owner, session))
            if found is None:
                return []
            self._items.move_to_end((owner, session))
            return list(found)

    def append(self, owner: Owner, session: str, entry: Entry) -> list[Entry]:
        """Add `entry` to the owner's conversation (created on first use); returns the entries now kept."""
        key = (owner, session)
        with self._lock:
            found = self._items.get(key)
            if found is None:
                found = self._items[key] = []
                self._evict(owner)
            self._items.move_to_end(key)
            found.append(entry)
            del found[: max(0, len(found) - self.max_entries)]
            return list(found)

    def clear(self, owner: Owner, session: str) -> None:
        with self._lock:
            self._items.pop((owner, session), None)

    def __len__(self) -> int:
        return len(self._items)

    def _evict(self, owner: Owner) -> None:
        """Drop the owner's least recent conversations beyond their cap, then anyone's beyond the total."""
        mine = [key for key in self._items if key[0] == owner]
        for key in mine[: max(0, len(mine) - self.max_per_owner)]:
            del self._items[key]
        while len(self._items) > self.max_conversations:
            self._items.popitem(last=False)
