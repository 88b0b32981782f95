"""train.py with every logged training value recorded at full precision, for tests/test_ddp.py:

    python -m torch.distributed.run --nproc-per-node N tests/ddp_driver.py RECORD.json TRAIN_ARGS...

Rank 0 writes RECORD.json: the values each step logs (loss, acc, ...), global-batch means.
"""
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets  # noqa: E402,F401  (registers the datasets)
import trainers  # noqa: E402,F401  (registers the trainers)
from engine.launch import main  # noqa: E402
from engine.utils import MetricMeter  # noqa: E402

RECORD: list[dict[str, float]] = []
_update = MetricMeter.update


def recording_update(self, values):
    RECORD.append({k: float(v) for k, v in values.items()})
    _update(self, values)


if __name__ == "__main__":
    MetricMeter.update = recording_update
    code = main(sys.argv[2:])
    if os.environ.get("RANK", "0") == "0":
        Path(sys.argv[1]).write_text(json.dumps(RECORD))
    sys.exit(code)
