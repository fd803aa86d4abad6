"""The one error of the model-folder format: a folder that breaks the contract, named by file and field."""

from __future__ import annotations


class ManifestError(Exception):
    """A model folder whose manifest or files do not match the contract; the message names file and field."""
