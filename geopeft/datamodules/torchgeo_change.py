"""TorchGeo's LEVIR-CD and OSCD datamodules, with a predict stage.

TorchGeo 0.10's ``LEVIRCDDataModule`` and ``OSCDDataModule`` set up no dataset for
``predict``, so ``geopeft predict`` / ``torchgeo predict`` stop with "must define
one of ('predict_dataset', 'dataset')". These subclasses are the same datamodules
(same arguments, splits and augmentation) that predict over the test split, with
the test split's augmentation.
"""

from torchgeo.datamodules import LEVIRCDDataModule, OSCDDataModule


class _PredictOnTestSplit:
    """Set up the test split for ``predict`` and augment it as for ``test``."""

    def setup(self, stage: str) -> None:
        """Set up the datasets of a stage; ``predict`` uses the test split.

        Args:
            stage: Either 'fit', 'validate', 'test', or 'predict'.
        """
        if stage != 'predict':
            super().setup(stage)  # type: ignore[misc]
            return
        super().setup('test')  # type: ignore[misc]
        self.predict_dataset = self.test_dataset
        test_aug = getattr(self, 'test_aug', None)
        self.predict_aug = test_aug if test_aug is not None else self.aug


class LEVIRCDChangeDataModule(_PredictOnTestSplit, LEVIRCDDataModule):
    """TorchGeo's :class:`~torchgeo.datamodules.LEVIRCDDataModule` that also predicts.

    Prediction runs over the test pairs with the test augmentation (normalisation
    and the centre ``patch_size`` crop).
    """


class OSCDChangeDataModule(_PredictOnTestSplit, OSCDDataModule):
    """TorchGeo's :class:`~torchgeo.datamodules.OSCDDataModule` that also predicts.

    Prediction runs over the test cities with the test transforms (normalisation and
    TorchGeo's random ``patch_size`` crop of each city).
    """
