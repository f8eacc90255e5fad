"""The stage commands a pipeline step runs, called in this process.

A step's command line (:attr:`Step.argv <kbioxlm.pipeline.plan.Step>`) is its contract: printed so
it can be copied, part of the step's fingerprint, and open to any flag of the command through a
config's ``args:``. It is parsed by the parsers the stages register and the function the owning
stage registered for the command is called with the result, exactly as ``kbioxlm <argv>`` runs it.
The stages are imported here by name, so the pipeline's dependencies are what this module
imports; :mod:`kbioxlm.cli`, the program above every stage and the pipeline, is never called back.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..cliutil import call_command, parse_command, program_parser
from ..corpus import cli as corpus_cli
from ..kb import cli as kb_cli
from ..pretrain import cli as pretrain_cli
from ..probe import cli as probe_cli
from ..tasks import cli as tasks_cli

# Whose commands a plan runs: kb import/mine-pairs/stats/split, corpus *, vocab reduce, pretrain,
# export, probe, benchmark.
STAGES = (kb_cli, corpus_cli, pretrain_cli, probe_cli, tasks_cli)


def stage_parser() -> argparse.ArgumentParser:
    """The ``kbioxlm`` parser with the stage commands a plan uses (so its messages read as before)."""
    return program_parser(STAGES)


def run_stage(argv: Sequence[str]) -> int:
    """Run ``kbioxlm <argv>`` in this process; returns its exit status (2: a command line argparse
    rejected, or a :class:`~kbioxlm.errors.KbioxlmError`, printed as one ``error:`` line; 130: Ctrl-C)."""
    try:
        args = parse_command(stage_parser(), list(argv))
    except SystemExit as exc:  # argparse rejected the command line (and said why on stderr)
        return exc.code if isinstance(exc.code, int) else 2
    return call_command(args)
