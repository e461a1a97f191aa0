"""What made a sweep folder: the software, the machine and the times (``provenance.yaml``).

The runner writes ``DIR/provenance.yaml`` when a sweep starts and again when it finishes::

    started: 2026-12-06T18:00:00+00:00     # UTC; the first start when a sweep was resumed
    finished: 2026-12-06T18:11:00+00:00    # absent while the sweep is unfinished
    environment:                           # of the process that started or last resumed it
      versions: {python: 3.11.7, jax: 0.10.2, jaxlib: 0.10.2, flax: ..., optax: ...,
                 numpy: ..., jaxmmcl: 0.1.0}
      git_commit: 46c47e6...               # of jaxmmcl's own checkout; null when installed
      git_dirty: false                     # uncommitted changes to tracked files
      backend: cpu
      device_kind: cpu
      devices: 2
      processes: 1
    programs:                              # every compiled training program
      group000-part000: {runs: 15, wall_s: 312.4, compile_s: 6.1}

``wall_s`` is the program's training and evaluation; ``compile_s`` its training programs'
compilation (part of ``wall_s``).
"""

from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "jaxmmcl")
FILE = "provenance.yaml"


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def environment() -> dict[str, Any]:
    """Versions, jaxmmcl's git commit, the backend and the devices of this process."""
    import jax

    devices = jax.devices()
    return {
        "versions": {"python": platform.python_version()}
        | {package: _version(package) for package in PACKAGES},
        **_git(Path(__file__).resolve().parent.parent),
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "devices": len(devices),
        "processes": jax.process_count(),
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(source: Path) -> dict[str, Any]:
    """The commit of ``source`` when it is the top of a git checkout (an editable install);
    None otherwise, so that a package installed inside some other repository (a virtual
    environment in a project folder) does not report that repository's commit."""

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != source:
        return {"git_commit": None, "git_dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(status)}


def markdown(provenance: dict[str, Any]) -> str:
    """The report's provenance section (Markdown) of a ``provenance.yaml`` mapping."""
    env = provenance.get("environment") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items())
    commit = env.get("git_commit")
    if commit:
        commit += " (with uncommitted changes)" if env.get("git_dirty") else ""
    lines = [
        "## Provenance\n",
        f"- started {provenance.get('started', '?')}, "
        f"finished {provenance.get('finished') or 'not yet'} (UTC)",
        f"- {versions}",
        f"- jaxmmcl commit: {commit or 'not a git checkout'}",
        f"- {env.get('backend', '?')}: {env.get('devices', '?')} x {env.get('device_kind', '?')}, "
        f"{env.get('processes', '?')} process(es)\n",
    ]
    programs = provenance.get("programs") or {}
    if programs:
        lines.append("| program | runs | wall time | of it compiling |")
        lines.append("|---|---|---|---|")
        for name, p in programs.items():
            lines.append(f"| {name} | {p['runs']} | {p['wall_s']:.1f} s | {p['compile_s']:.1f} s |")
        lines.append("")
    return "\n".join(lines)
