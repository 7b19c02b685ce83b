"""``livetok install-service``, ``uninstall-service`` and ``reload``: the systemd service's commands
(:mod:`livetok.service`)."""

from __future__ import annotations

import argparse
import sys


def install(args: argparse.Namespace) -> int:
    from livetok.service.install import install_service

    return install_service(args.root, args.config, sys.stdout, sys.stderr)


def uninstall(args: argparse.Namespace) -> int:
    from livetok.service.install import uninstall_service

    return uninstall_service(args.root, sys.stdout, sys.stderr)


def reload(args: argparse.Namespace) -> int:
    from livetok.service.reload import reload_and_wait

    return reload_and_wait(args.pid, args.timeout, args.runtime_dir, sys.stdout)
