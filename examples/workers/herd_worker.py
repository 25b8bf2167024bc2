"""Serve herd's JSON-lines call protocol from a Python worker (stdlib only).

herd writes one request per line on the worker's stdin:
    {"id": 7, "method": "resize", "params": {...}}
and reads one reply per line on its stdout:
    {"id": 7, "result": ...}   or   {"id": 7, "error": {"message": "..."}}

Usage:
    from herd_worker import serve

    def resize(params):
        return {"w": params["w"] // 2}

    serve({"resize": resize})

Each handler gets the request's params and returns a JSON-serializable
result; an exception becomes an error reply with its message. Requests are
handled one at a time, in order. While serve() runs, print() goes to stderr,
so stray output cannot break a reply line; herd logs stderr lines with the
worker's name. serve() returns when herd closes stdin.
"""

import json
import sys
import threading

__all__ = ["serve", "log"]

_reply_lock = threading.Lock()
_replies = sys.stdout


def log(*args):
    """Write a log line to stderr (herd logs it with the worker's name)."""
    print(*args, file=sys.stderr, flush=True)


def _send(message):
    line = json.dumps(message, separators=(",", ":"), default=str)
    with _reply_lock:
        _replies.write(line + "\n")
        _replies.flush()


def _handle(handlers, line):
    try:
        request = json.loads(line)
    except ValueError as err:
        log("herd_worker: ignoring a request that is not JSON:", err)
        return
    if not isinstance(request, dict) or "id" not in request:
        log("herd_worker: ignoring a request without an id")
        return
    req_id = request["id"]
    method = request.get("method")
    handler = handlers.get(method)
    if handler is None:
        _send({"id": req_id, "error": {"message": "unknown method: %s" % method}})
        return
    try:
        result = handler(request.get("params"))
    except Exception as err:  # a handler's failure is the caller's error, not ours
        _send({"id": req_id, "error": {"message": "%s: %s" % (type(err).__name__, err)}})
        return
    _send({"id": req_id, "result": result})


def serve(handlers):
    """Answer requests from stdin with `handlers` (method name -> function)."""
    global _replies
    _replies = sys.stdout
    sys.stdout = sys.stderr
    try:
        for line in sys.stdin:
            line = line.strip()
            if line:
                _handle(handlers, line)
    finally:
        sys.stdout = _replies
