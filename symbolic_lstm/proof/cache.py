"""The proofs already decided: a JSON file of the symbolic-size obligations proved, keyed by a hash of what the
engine produced for each rule (and of the checker), so a changed rule is proved again.

``$SYMBOLIC_LSTM_PROOF_CACHE/every-n.json``, else ``$XDG_CACHE_HOME/symbolic-lstm/proofs/every-n.json`` (a folder
created 0700 and refused when it could be another user's: a forged entry would claim a proof).  The file is read
without running anything (JSON), written atomically; a damaged or foreign file is as good as none — every rule is
proved again and the file rewritten — and a cache that cannot be written leaves the proof as it was, uncached.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..runtime.files import write_atomic
from ..runtime.paths import cache_home
from ..runtime.trust import UntrustedPathError, private_folder, private_folder_check, read_code

#: The environment variable naming the folder of the proof cache (tests point it at a temporary folder).
FOLDER_VARIABLE = "SYMBOLIC_LSTM_PROOF_CACHE"
FILE = "every-n.json"
FORMAT = 1
_FIX = f"set {FOLDER_VARIABLE} (or XDG_CACHE_HOME) to a folder only you can write"


def cache_folder() -> Path:
    """Where the proof cache lives (not created)."""
    named = os.environ.get(FOLDER_VARIABLE, "")
    return Path(named) if os.path.isabs(named) else cache_home() / "proofs"


class ProofCache:
    """The obligations proved before: ``get(key)`` the time one was proved, ``put`` remembers one (atomically,
    merged with what another run wrote meanwhile).  ``folder``: default :func:`cache_folder`."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else cache_folder()
        self.path = self.folder / FILE
        self.entries = self._read()

    def _read(self) -> dict[str, dict[str, str]]:
        try:  # read once on its descriptor: a link, another's file or folder, no regular file — proved again
            data = json.loads(read_code(self.path, "proof cache", own=True).decode("utf-8"))
        except (OSError, UntrustedPathError, ValueError):  # none, unreadable, not UTF-8, not JSON: proved again
            return {}
        proved = data.get("proved") if isinstance(data, dict) and data.get("format") == FORMAT else None
        if not isinstance(proved, dict):
            return {}
        return {
            k: v
            for k, v in proved.items()
            if isinstance(k, str) and isinstance(v, dict) and isinstance(v.get("proved"), str)
        }

    def get(self, key: str) -> str | None:
        entry = self.entries.get(key)
        return entry["proved"] if entry is not None else None

    def put(self, key: str, name: str, when: str) -> None:
        self.entries[key] = {"rule": name, "proved": when}
        try:
            private_folder(self.folder, "the proof cache folder", _FIX)
            merged = {**self._read(), **self.entries}
            text = json.dumps({"format": FORMAT, "proved": merged}, indent=1, sort_keys=True, ensure_ascii=False)
            check = private_folder_check(self.folder, "the proof cache folder", _FIX)
            write_atomic(self.path, text + "\n", follow=False, folder_check=check)
        except (OSError, UntrustedPathError):  # not written: proved again next time
            pass
