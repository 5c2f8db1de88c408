"""Method registry: one file per removal method, each registered by name.

Importing this package registers every method. Look one up with
:func:`get_method`; :data:`REGISTRY` maps names to classes. No module here
imports Ray or MLflow.
"""

from removal_bench.methods.base import COMMON, REGISTRY, Method, get_method, register, reverse_gradient, training_identity  # noqa: F401
from removal_bench.methods import vanilla, irene, grl  # noqa: F401,E402  (registers)
from removal_bench.methods import leace, inlp  # noqa: F401,E402
from removal_bench.methods import adv_debias, lnl, end, hsic  # noqa: F401,E402
