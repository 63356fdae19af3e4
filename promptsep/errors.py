"""Exceptions raised for bad user input.

Every error that a user can cause (a bad file, a bad prompt) is a subclass of
:class:`InputError`, itself a :class:`ValueError`, so the CLI and the demo can
show its message without a traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input given by a user; the message says what is wrong."""


class AudioError(InputError):
    """Unreadable, empty, silent-when-not-allowed, non-finite or oversized audio."""


class PromptError(InputError):
    """A prompt that cannot be used: bad span order, span past the end, unknown kind, ..."""


class VideoError(PromptError):
    """A video prompt that cannot be used: unreadable, shorter than the audio, no box or mask."""


class OptionError(InputError):
    """A setting out of range or not a finite number: steps, candidates, guidance, seed, device, ..."""


class NonFiniteOutputError(InputError):
    """The model produced NaN/Inf samples (a corrupted checkpoint or an extreme setting); nothing
    is returned or written."""


class OutputExistsError(InputError, FileExistsError):
    """The output file exists and overwriting was not asked for (``overwrite=True``)."""
