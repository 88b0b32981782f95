"""dassl.utils (promptlab's layer: external/dassl_utils.py)."""
from external.dassl_utils import *  # noqa: F401,F403
from external.dassl_utils import __all__  # noqa: F401
