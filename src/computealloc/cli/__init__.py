"""The ``computealloc`` command: a thin typer layer over the Python API.

:mod:`~computealloc.cli.common` holds what the commands share (the typer ``app``, the console,
error lines, flag types); the commands live by stage in :mod:`~computealloc.cli.data`,
:mod:`~computealloc.cli.analysis`, :mod:`~computealloc.cli.train` and
:mod:`~computealloc.cli.serve`, and are registered here in the order ``--help`` lists them.
"""

from __future__ import annotations

from computealloc.cli.analysis import estimate_cmd, evaluate_cmd, solve_cmd
from computealloc.cli.common import app
from computealloc.cli.data import collect_cmd, datasets_app, inspect
from computealloc.cli.serve import serve_cmd
from computealloc.cli.train import fit_cmd, ibpo_cmd

app.add_typer(datasets_app, name="datasets")
app.command()(inspect)
app.command("estimate")(estimate_cmd)
app.command("collect")(collect_cmd)
app.command("ibpo")(ibpo_cmd)
app.command("solve")(solve_cmd)
app.command("serve")(serve_cmd)
app.command("fit")(fit_cmd)
app.command("evaluate")(evaluate_cmd)

__all__ = ["app"]
