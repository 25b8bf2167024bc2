"""An example herd worker: computes thumbnail sizes.

Run it under herd with the call protocol:
    WorkerSpec::new("resizer", "python3")
        .args(["examples/workers/resizer.py"])
        .jsonl()
then: sup.call("resizer", "resize", json!({"w": 1920, "h": 1080, "max": 64}), timeout)
returns {"w": 64, "h": 36}.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from herd_worker import log, serve  # noqa: E402


def resize(params):
    """Scale (w, h) to fit in a max x max box, keeping the aspect ratio."""
    w, h = int(params["w"]), int(params["h"])
    biggest = int(params.get("max", 64))
    if w <= 0 or h <= 0:
        raise ValueError("width and height must be positive")
    scale = min(1.0, biggest / max(w, h))
    return {"w": max(1, round(w * scale)), "h": max(1, round(h * scale))}


def ping(_params):
    return "pong"


if __name__ == "__main__":
    log("resizer ready, worker", os.environ.get("HERD_WORKER", "?"))
    serve({"resize": resize, "ping": ping})
