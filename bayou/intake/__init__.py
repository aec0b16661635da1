"""Taking files in, whatever brings them: an upload (`api`), a server-side batch (`workers.batching`) or
`bayou ingest`. A cheap look refuses what is plainly bad, then the file is stored, blob first, then its
row. Refusals are typed (`extractor.errors.InputError` with a stable `code`); each caller turns them into
what its transport needs (an HTTP status, a count in a summary)."""

from bayou.intake.folders import Candidate, candidate_files, resolve_folder
from bayou.intake.inspection import inspect
from bayou.intake.limits import MIB, Limits, check_size
from bayou.intake.storing import Taken, store_file, take_file

__all__ = [
    "MIB",
    "Candidate",
    "Limits",
    "Taken",
    "candidate_files",
    "check_size",
    "inspect",
    "resolve_folder",
    "store_file",
    "take_file",
]
