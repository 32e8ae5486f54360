"""Which processes of a run are ranks of a distributed job, and where each sits in its job.

A rank records itself in the journal when it is ocrtrain's trainer (`Journal.record_rank`);
any other program a launcher started (torchrun, Lightning, srun) is told by the variables the
launcher gave it, which its own children (DataLoader workers) inherit unchanged: a rank is a
process whose launcher variables differ from its parent's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ocrtrain.procman.journal import RankRecord
from ocrtrain.procman.procfs import ProcStat, env_tag, read_environ

_GLOBAL = (b"RANK=", b"SLURM_PROCID=")
_LOCAL = (b"LOCAL_RANK=", b"SLURM_LOCALID=")
_NODE = (b"GROUP_RANK=", b"NODE_RANK=", b"SLURM_NODEID=")
_KEYS = (*_GLOBAL, *_LOCAL, *_NODE)
_TORCH_AT = tuple(i for i, key in enumerate(_KEYS) if not key.startswith(b"SLURM_"))


def _int_tag(environ: bytes | None, keys: tuple[bytes, ...]) -> int | None:
    """The first of `keys` set to a whole number in a raw environment."""
    for key in keys:
        raw = env_tag(environ, key)
        if raw is not None and raw.isdigit():
            return int(raw)
    return None


def launcher_vars(environ: bytes | None) -> tuple[str | None, ...] | None:
    """Every launcher rank variable's value in a raw environment (None if it has none): a
    process whose values differ from its parent's was started as a rank. All of them, not
    the place they make: under srun, a torchrun agent (SLURM_PROCID=0) and its rank (RANK=0,
    SLURM_PROCID=0 inherited) sit at the same place."""
    values = tuple(env_tag(environ, key) for key in _KEYS)
    return None if all(v is None for v in values[: len(_GLOBAL) + len(_LOCAL)]) else values


def launcher_rank(environ: bytes | None) -> tuple[int | None, int | None, int | None] | None:
    """(global, local, node) rank from a launcher's variables (torchrun, Lightning, srun) in
    a raw environment; None if it names no rank at all."""
    place = (_int_tag(environ, _GLOBAL), _int_tag(environ, _LOCAL), _int_tag(environ, _NODE))
    return None if place[0] is None and place[1] is None else place


def run_ranks(
    members: Mapping[int, ProcStat],
    recorded: Sequence[RankRecord],
    environs: Mapping[int, bytes | None] | None = None,
) -> list[RankRecord]:
    """The live ranks among a run's `members`: those `recorded` in the journal (the same pid
    and start), then each process a launcher started as a rank. A process that srun's
    variables alone make a rank is none when torchrun or Lightning started ranks below it
    (srun ran a launcher). `environs` (raw, by pid) are read from /proc when not given."""
    out = {r.pid: r for r in recorded if r.pid in members and members[r.pid].start == r.start}
    env = dict(environs) if environs is not None else {}

    def environ(pid: int) -> bytes | None:
        if pid not in env:
            env[pid] = read_environ(pid)
        return env[pid]

    started: dict[int, tuple[str | None, ...]] = {}
    for pid, st in members.items():
        mine = launcher_vars(environ(pid))
        if mine is not None and not (
            st.ppid in members and launcher_vars(environ(st.ppid)) == mine
        ):
            started[pid] = mine  # not a rank's worker: its values are its own
    if any(_torch_rank(v) for v in started.values()):
        started = {pid: v for pid, v in started.items() if _torch_rank(v)}
    for pid in started.keys() - out.keys():
        record = _record(pid, members[pid].start, launcher_rank(environ(pid)))
        if record is not None:
            out[pid] = record
    return sorted(out.values(), key=lambda r: r.global_rank)


def _torch_rank(values: tuple[str | None, ...]) -> bool:
    """Whether torchrun's or Lightning's variables (not srun's alone) are among `values`."""
    return any(values[i] is not None for i in _TORCH_AT)


def _record(
    pid: int, start: int, place: tuple[int | None, int | None, int | None] | None
) -> RankRecord | None:
    if place is None:
        return None
    global_rank, local_rank, node_rank = place
    if global_rank is None and node_rank in (None, 0):
        global_rank = local_rank  # one node (Lightning's own launcher): local is global
    if global_rank is None:
        return None
    local = local_rank if local_rank is not None else global_rank
    return RankRecord(pid, start, global_rank, local, node_rank or 0)
