"""The ``livetok`` commands, one module each; :mod:`livetok.cli` is the entry point that dispatches to them."""
