"""Install PostgreSQL's server binaries when they are missing (CI machines run as root).

Called by `make test` before pytest. Without root or apt it only prints why the
PostgreSQL tests will be skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pg import find_pg_bin  # noqa: E402


def main() -> int:
    if find_pg_bin() is not None:
        return 0
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print("PostgreSQL binaries not found and cannot be installed here: PostgreSQL tests will be skipped.")
        return 0
    print("Installing PostgreSQL server binaries with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    result = subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=False, env=env)
    if result.returncode != 0 or find_pg_bin() is None:
        print("Could not install PostgreSQL: PostgreSQL tests will be skipped.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
