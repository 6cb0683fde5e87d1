"""Trial results grouped by session, with every session of the graph, in pk order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..records import Result, Session


class SessionWalker:
    """Turns the (session, pk)-ordered result stream into ``(session, results)`` pairs,
    including the sessions that have no result (MUSCLE's classic export and the wide
    tables give those a row too).

    :param sessions: every session of the export.
    """

    def __init__(self, sessions: Iterable[Session]) -> None:
        self._sessions = sorted(sessions, key=lambda s: s.pk)
        self._next = 0
        self._current: Session | None = None
        self._results: list[Result] = []

    def feed(self, batch: Sequence[Result]) -> list[tuple[Session, list[Result]]]:
        """Take a batch; return the sessions that are complete now."""
        done: list[tuple[Session, list[Result]]] = []
        current = self._current
        for result in batch:
            if current is None or result.session != current.pk:
                if current is not None:
                    done.append((current, self._results))
                sessions = self._sessions
                while sessions[self._next].pk != result.session:
                    done.append((sessions[self._next], []))
                    self._next += 1
                current = sessions[self._next]
                self._next += 1
                self._results = []
            self._results.append(result)
        self._current = current
        return done

    def finish(self) -> list[tuple[Session, list[Result]]]:
        """The last session with results and every session after it."""
        done: list[tuple[Session, list[Result]]] = []
        if self._current is not None:
            done.append((self._current, self._results))
            self._current = None
        done.extend((s, []) for s in self._sessions[self._next :])
        self._next = len(self._sessions)
        return done
