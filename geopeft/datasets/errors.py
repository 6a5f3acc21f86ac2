"""Errors of geopeft's datasets."""

from torchgeo.datasets import DatasetNotFoundError


class DataNotFoundError(DatasetNotFoundError):
    """Raised when a dataset's folders, files or split are missing.

    A :class:`~torchgeo.datasets.DatasetNotFoundError` (so code that catches
    TorchGeo's error catches it too) that carries geopeft's own message: the path,
    the expected layout and what is missing, instead of TorchGeo's download hint.
    """

    def __init__(self, message: str) -> None:
        """Initialize a new DataNotFoundError instance.

        Args:
            message: The full error message.
        """
        FileNotFoundError.__init__(self, message)
