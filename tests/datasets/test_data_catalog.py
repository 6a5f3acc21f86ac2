"""data_catalog.yaml stays consistent with the code that loads the datasets."""

import importlib
from pathlib import Path

import yaml
from torchgeo.datasets import OSCD

from geopeft.datamodules import PROTOCOLS
from geopeft.datasets import AID
from geopeft.datasets.synthetic_scenes import CLASSES

CATALOG = Path(__file__).parents[2] / 'data_catalog.yaml'
FIELDS = {
    'task',
    'classes',
    'bands',
    'image_size',
    'resolution',
    'size',
    'licence',
    'source',
    'protocols',
    'loader',
}


def _catalog() -> dict:
    return yaml.safe_load(CATALOG.read_text())['datasets']


def _import(path: str) -> object:
    module, _, name = path.split(' ')[0].rpartition('.')
    return getattr(importlib.import_module(module), name)


def test_entries_have_the_fields_and_loaders_import() -> None:
    catalog = _catalog()
    assert {'ucmerced', 'aid', 'synthetic_scenes'} <= set(catalog)
    for entry in catalog.values():
        assert FIELDS <= set(entry)
        assert entry['classes']['count'] == len(entry['classes']['names'])
        _import(entry['loader'])
        _import(entry['datamodule'])


def test_classes_and_protocols_match_the_code() -> None:
    catalog = _catalog()
    assert catalog['aid']['classes']['names'] == list(AID.expected_classes)
    assert catalog['synthetic_scenes']['classes']['names'] == list(CLASSES)
    for key, protocol in PROTOCOLS.items():
        assert key in catalog[protocol.dataset]['protocols']


def test_change_detection_entries() -> None:
    catalog = _catalog()
    assert {'levircd', 'oscd', 'change_folder'} <= set(catalog)
    assert catalog['oscd']['bands'] == list(OSCD.all_bands)
    for key in ('levircd', 'oscd', 'change_folder'):
        assert catalog[key]['classes']['names'] == ['no change', 'change']
    assert catalog['change_folder']['loader'] == 'geopeft.datasets.ChangeFolder'
