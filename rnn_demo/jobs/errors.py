"""The errors of the job manager; their messages are shown to the user as they are."""

from __future__ import annotations


class JobError(RuntimeError):
    """A job cannot be started or managed; the message is for the user."""


class CapacityError(JobError):
    """Every training slot of the server is busy; the message says when one should free up."""
