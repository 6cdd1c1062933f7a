"""Where a local Drover server keeps its URL, token and CA, found as the CLI finds them.

The data directory is ``$DROVER_DATA_DIR``, else ``$XDG_DATA_HOME/drover``, else
``~/.local/share/drover``. A server started there writes its URL to
``<data>/server/endpoint``, its token to ``<data>/server/token`` (mode 0600: readable by
the user who runs it) and the cluster's CA to ``<data>/server/tls/ca.crt``.
``DROVER_SERVER``, ``DROVER_TOKEN`` and ``DROVER_CA`` win over the files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def default_data_dir() -> Path:
    """The data directory the CLI would use."""
    if os.environ.get("DROVER_DATA_DIR"):
        return Path(os.environ["DROVER_DATA_DIR"])
    if os.environ.get("XDG_DATA_HOME"):
        return Path(os.environ["XDG_DATA_HOME"]) / "drover"
    if os.environ.get("HOME"):
        return Path(os.environ["HOME"]) / ".local" / "share" / "drover"
    return Path(".drover")


def _read(path: Path) -> Optional[str]:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text or None


def server_url(data_dir: Optional[Path] = None) -> Optional[str]:
    """``$DROVER_SERVER`` (the first of a comma-separated list), else the local server's URL."""
    env = os.environ.get("DROVER_SERVER")
    if env:
        return env.split(",")[0].strip()
    return _read((data_dir or default_data_dir()) / "server" / "endpoint")


def token(data_dir: Optional[Path] = None) -> Optional[str]:
    """``$DROVER_TOKEN``, else the local server's cluster token."""
    return os.environ.get("DROVER_TOKEN") or _read((data_dir or default_data_dir()) / "server" / "token")


def ca_file(data_dir: Optional[Path] = None) -> Optional[str]:
    """``$DROVER_CA``, else the local server's CA certificate when there is one."""
    if os.environ.get("DROVER_CA"):
        return os.environ["DROVER_CA"]
    path = (data_dir or default_data_dir()) / "server" / "tls" / "ca.crt"
    return str(path) if path.is_file() else None
