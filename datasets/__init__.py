"""Dataset registry: one file per dataset, each registered by name.

Importing this package registers every dataset. Look one up with
:func:`get_dataset`; :data:`REGISTRY` maps names to classes.
"""

from removal_bench.datasets.base import (  # noqa: F401
    REGISTRY,
    SPLITS,
    Data,
    DataFile,
    Dataset,
    DatasetSpec,
    Split,
    default_data_root,
    get_dataset,
    register,
)
from removal_bench.datasets import synthetic  # noqa: F401,E402  (registers)
from removal_bench.datasets import colored_digits, adult  # noqa: F401,E402  (register)
from removal_bench.datasets import compas, german, biased_mnist, celeba  # noqa: F401,E402
