"""The ``drivepipe`` console script: the core's commands plus the local tools.

``drivepipe sync|transform|validate`` are :mod:`shared.cli`'s; ``drivepipe emulator``,
``drivepipe demo`` and ``drivepipe dev aws|gcp`` live here, outside the core, so nothing that
ships to a cloud imports local tooling. Each tool parses everything after its command word.
"""

from __future__ import annotations

import sys

from shared.cli import EXIT_OK, EXIT_USAGE, Delegate
from shared.cli import main as core_main

DEV_USAGE = "usage: drivepipe dev {aws,gcp} [options]"


def _emulator(rest: list[str]) -> int:
    from devstack.drive_emulator import main as emulator_main

    return emulator_main(rest)


def _demo(rest: list[str]) -> int:
    from devstack.demo import main as demo_main

    return demo_main(rest)


def _dev(rest: list[str]) -> int:
    cloud, rest = (rest[0], rest[1:]) if rest else ("", [])
    if cloud in ("-h", "--help"):
        print(f"{DEV_USAGE}\n  drivepipe dev aws --help, drivepipe dev gcp --help: the options")
        return EXIT_OK
    if cloud == "aws":
        from devstack.aws_dev import main as aws_main

        return aws_main(rest)
    if cloud == "gcp":
        from devstack.gcp_dev import main as gcp_main

        return gcp_main(rest)
    print(DEV_USAGE, file=sys.stderr)
    return EXIT_USAGE


LOCAL_TOOLS = {
    "emulator": Delegate("serve a local Drive API v3 emulator", _emulator),
    "demo": Delegate("run the bundled demo on the local stack", _demo),
    "dev": Delegate("simulate a cloud locally (aws or gcp)", _dev),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``drivepipe`` console script."""
    return core_main(argv, delegates=LOCAL_TOOLS)


if __name__ == "__main__":
    sys.exit(main())
