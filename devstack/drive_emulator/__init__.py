"""A faithful, local Google Drive API v3 emulator for dev and tests: files.list / get / export,
changes.getStartPageToken / changes.list and about.get.

from devstack.drive_emulator import DriveEmulator, FaultConfig, generate_tree
with DriveEmulator(Path("folder")) as emu:
    emu.url      # set DRIVE_API_URL to this
    emu.root_id  # the folder id to sync
"""

from devstack.drive_emulator.cli import main
from devstack.drive_emulator.emulator import DriveEmulator
from devstack.drive_emulator.faults import EmulatorStats, FaultConfig, RequestEvent
from devstack.drive_emulator.generate import generate_tree
from devstack.drive_emulator.ids import path_id
from devstack.drive_emulator.tree import TreeError

__all__ = [
    "DriveEmulator",
    "EmulatorStats",
    "FaultConfig",
    "RequestEvent",
    "TreeError",
    "generate_tree",
    "main",
    "path_id",
]
