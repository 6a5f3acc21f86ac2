"""AID: the Aerial Image Dataset for scene classification."""

from collections.abc import Callable
from pathlib import Path as PathLibPath
from typing import ClassVar

from torchgeo.datasets.utils import Path, Sample

from .scene_folder import SceneFolder


class AID(SceneFolder):
    """AID: Aerial Image Dataset.

    The `AID <http://www.captain-whu.com/project/AID/>`_ dataset is a scene
    classification dataset of 10,000 600x600 RGB JPEG images collected from Google
    Earth imagery, at spatial resolutions from about 0.5 m to 8 m, in 30 aerial
    scene classes of 220 to 420 images each.

    Dataset classes:

    Airport, BareLand, BaseballField, Beach, Bridge, Center, Church, Commercial,
    DenseResidential, Desert, Farmland, Forest, Industrial, Meadow,
    MediumResidential, Mountain, Park, Parking, Playground, Pond, Port,
    RailwayStation, Resort, River, School, SparseResidential, Square, Stadium,
    StorageTanks, Viaduct

    AID has no official split: the usual protocols are AID-28 (20 % of each class
    for training, 80 % for testing) and AID-55 (50 : 50), drawn at random per class
    and averaged over seeds (see :data:`geopeft.datamodules.PROTOCOLS`).

    AID has no stable automated download: the authors distribute it through
    OneDrive and Baidu Pan links on the project page. Download and extract it
    manually, then point ``root`` at the folder that holds the 30 class folders, or
    at its parent when that folder is named ``AID``.

    If you use this dataset in your research, please cite the following paper:

    * https://doi.org/10.1109/TGRS.2017.2685945
    """

    expected_classes: ClassVar[tuple[str, ...]] = (
        'Airport',
        'BareLand',
        'BaseballField',
        'Beach',
        'Bridge',
        'Center',
        'Church',
        'Commercial',
        'DenseResidential',
        'Desert',
        'Farmland',
        'Forest',
        'Industrial',
        'Meadow',
        'MediumResidential',
        'Mountain',
        'Park',
        'Parking',
        'Playground',
        'Pond',
        'Port',
        'RailwayStation',
        'Resort',
        'River',
        'School',
        'SparseResidential',
        'Square',
        'Stadium',
        'StorageTanks',
        'Viaduct',
    )

    #: Where the data is distributed.
    url = 'http://www.captain-whu.com/project/AID/'

    def __init__(
        self,
        root: Path = 'data',
        transforms: Callable[[Sample], Sample] | None = None,
        download: bool = False,
    ) -> None:
        """Initialize a new AID instance.

        Args:
            root: Directory that holds the 30 class folders, or its parent when that
                folder is named ``AID``.
            transforms: A function/transform that takes an input sample and returns
                a transformed version.
            download: Accepted for symmetry with TorchGeo datasets; AID cannot be
                downloaded automatically, so when the data is missing this raises an
                error that explains the manual download.

        Raises:
            SceneDatasetNotFoundError: If the data is missing or incomplete.
        """
        self.download = download
        super().__init__(root=root, transforms=transforms)

    def _locate(self, root: PathLibPath) -> PathLibPath:
        """Return ``root``, or ``root/AID`` when the class folders are there."""
        nested = root / 'AID'
        if nested.is_dir() and not any(
            (root / name).is_dir() for name in self.expected_classes
        ):
            return nested
        return root

    def _download_hint(self) -> str:
        """Explain where to get AID and that it cannot be downloaded automatically."""
        hint = (
            f'AID has no stable automated download: get it from {self.url} (OneDrive '
            'or Baidu Pan links), extract it and point root at the folder with the '
            "30 class folders (or at its parent folder named 'AID')."
        )
        if self.download:
            hint = f'download=True cannot fetch AID. {hint}'
        return hint
