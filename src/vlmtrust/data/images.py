"""The safe image loader, re-exported from :mod:`vlmtrust.core.images` (where it lives).

Every layer decodes untrusted images through the one loader in ``core``; this module keeps the
``vlmtrust.data.images`` import path working for users (the package imports ``core.images``).
"""

from vlmtrust.core.images import *  # noqa: F403  (the same public names)
from vlmtrust.core.images import __all__ as __all__
