"""What a user sees of a refused command: a non-zero status and one line on stderr."""

from __future__ import annotations

import subprocess


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one `error: ...` line of a command that ended with status 1, and nothing else."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]
