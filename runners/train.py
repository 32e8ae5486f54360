"""`python runners/train.py [hydra overrides]`: train a recognizer, always under the supervisor.

`--help` and `--cfg job` are answered first (no run). Then the process is handed to
`ocrtrain run` (same pid and process group, so Ctrl+C from the terminal still reaches it);
torch is imported only after that.
"""

import sys

from ocrtrain.dist.launch import launch_job
from ocrtrain.procman import UsageError, ensure_supervised
from ocrtrain.train.info import answer_without_training

code = answer_without_training(sys.argv[1:], "runners/train.py")
if code is not None:
    sys.exit(code)
try:
    launch_job("train", sys.argv[1:], [__file__], grace=30)  # dist.nnodes=...: torchrun
except UsageError as exc:
    print(f"ERROR: {exc}", file=sys.stderr)
    sys.exit(2)
ensure_supervised("train", [__file__, *sys.argv[1:]], grace=30)

from ocrtrain.train.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
