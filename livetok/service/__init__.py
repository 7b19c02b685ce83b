"""livetok as a systemd service: the unit file (:mod:`livetok.service.unit`) and its installation
(:mod:`livetok.service.install`, ``livetok install-service`` / ``uninstall-service``); docs/service.md."""
