"""One error type for everything that can go wrong while starting local components."""

from __future__ import annotations


class ComponentError(RuntimeError):
    """A local component could not be built, started or reached.

    The message names the component, the cause, and what to do about it.
    """

    def __init__(self, component: str, cause: str, remedy: str) -> None:
        self.component = component
        self.cause = cause
        self.remedy = remedy
        super().__init__(f"{component}: {cause}\n  what to do: {remedy}")
