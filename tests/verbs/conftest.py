"""The verbs' tests use the fixtures of the packages they drive: the grid's parser and grid files, the
backbones' offline weights cache."""

from tests.backbones.conftest import offline_weights_cache, references  # noqa: F401 (autouse: no download)
from tests.grid.conftest import resolver, write_grid  # noqa: F401
