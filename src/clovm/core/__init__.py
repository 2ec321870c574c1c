"""Sans-IO state machines.

Rules for everything under core/: no asyncio, sockets, ``time``, global ``random``, logging or
printing. Every machine has ``handle(now, event) -> list[effect]`` and ``next_deadline()``.
Events are frozen dataclasses named in the past tense; effects are frozen dataclasses named
imperatively. States and transition tables live in :mod:`clovm.core._state`.
"""
