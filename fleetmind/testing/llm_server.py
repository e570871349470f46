"""Run a scripted OpenAI-compatible server in its own process.

```
python -m fleetmind.testing.llm_server --script replies.json [--port 0]
```

It prints ``listening on http://127.0.0.1:PORT/v1`` once it serves, and stops on SIGTERM or
Ctrl-C. The script file holds ``{"replies": [...], "rules": [...]}`` (see
:class:`fleetmind.testing.Reply`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from fleetmind.testing._llm_server import ScriptedLLMServer, load_script


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m fleetmind.testing.llm_server")
    parser.add_argument("--script", help="JSON file of replies and rules")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args(argv)
    replies, rules = load_script(args.script) if args.script else ([], [])
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with ScriptedLLMServer(replies, rules=rules, port=args.port, api_key=args.api_key) as server:
        print(f"listening on {server.url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
