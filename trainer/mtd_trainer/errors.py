"""The one error type that means "the input is wrong, retrying will not help"."""

from __future__ import annotations


class InputError(ValueError):
    """Bad data, model path or adapter; the message names the file and line or the field.

    The CLI turns it into exit code 2 and a one-line message, no traceback.
    """
