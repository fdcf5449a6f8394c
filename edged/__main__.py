"""``python -m edged`` and the ``edged`` command."""

from __future__ import annotations

import os
import sys

# edged's own numpy work is small (a score vector, the trained head's matrices): one BLAS
# thread does it fastest and leaves the cores to inference.  Two OpenBLAS threads competing
# with the TFLite threads made `edged train`'s fit ten times slower on a 2-core machine.
# Read when numpy loads, so it is set before anything imports it.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from edged.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
