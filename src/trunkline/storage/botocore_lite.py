"""Import botocore without the AWS Common Runtime: start-up matters for short copies.

botocore imports ``awscrt`` whenever it is installed (trunkline installs it for CRC64NVME
checksums) and uses it only for SigV4a and S3 Express signing, which trunkline does not
use; loading its shared library costs ~70 ms of every command's start (measured with
``python -X importtime``). Importing this module first makes botocore's one ``import
awscrt.auth`` fail, so botocore runs its pure-Python signer; ``awscrt`` itself stays
importable afterwards for the checksums that need it.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder


class _HideCRT(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "awscrt" or name.startswith("awscrt."):
            raise ImportError("awscrt is not loaded by botocore in trunkline (start-up)")
        return None


if "botocore.compat" not in sys.modules and "awscrt" not in sys.modules:
    _finder = _HideCRT()
    sys.meta_path.insert(0, _finder)
    try:
        import botocore.compat  # noqa: F401  (decides HAS_CRT once, here)
    finally:
        sys.meta_path.remove(_finder)
