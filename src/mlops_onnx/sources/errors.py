"""What a source raises when it cannot deliver: shared by the sources and their callers."""

from __future__ import annotations


class SourceError(RuntimeError):
    """The source could not deliver the dataset (credentials, network, missing folder).

    `retryable` is False when trying again cannot help (no or rejected credentials, a missing
    folder, a directory where a file belongs): the task then fails at once instead of retrying.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
