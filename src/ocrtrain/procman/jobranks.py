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


def _int_tag(environ: bytes | None, keys: tuple[bytes, ...]) -> int | None:
    """The first of `keys` set to a whole number in a raw environment."""
    for key in keys:
        raw = env_tag(environ, key)
        if raw is not None and raw.isdigit():
            return int(raw)
    return None


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
    and start), then each process a launcher started as a rank. `environs` (raw, by pid) are
    read from /proc when not given."""
    out = {r.pid: r for r in recorded if r.pid in members and members[r.pid].start == r.start}
    env = dict(environs) if environs is not None else {}

    def place(pid: int) -> tuple[int | None, int | None, int | None] | None:
        if pid not in env:
            env[pid] = read_environ(pid)
        return launcher_rank(env[pid])

    for pid, st in members.items():
        if pid in out:
            continue
        mine = place(pid)
        if mine is None or (st.ppid in members and place(st.ppid) == mine):
            continue  # no rank, or a rank's worker
        global_rank, local_rank, node_rank = mine
        if global_rank is None and node_rank in (None, 0):
            global_rank = local_rank  # one node (Lightning's own launcher): local is global
        if global_rank is None:
            continue
        local = local_rank if local_rank is not None else global_rank
        out[pid] = RankRecord(pid, st.start, global_rank, local, node_rank or 0)
    return sorted(out.values(), key=lambda r: r.global_rank)
