"""The library warnings a run's log never shows: each is harmless and says nothing a user can
act on. Filtered here, in one place, by message; any other warning still shows."""

from __future__ import annotations

import warnings

KNOWN = (
    # Lightning's own use of a torch API that torch deprecated.
    r".*isinstance\(treespec, LeafSpec\)",
    # A resumed run saves into its own new folder (runs never share checkpoint folders):
    # Lightning notes that the best score of the run it resumes is not carried over.
    r"The dirpath has changed from",
)


def quiet_known_warnings() -> None:
    for message in KNOWN:
        warnings.filterwarnings("ignore", message=message)
