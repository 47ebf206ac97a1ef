#!/usr/bin/env python3
"""An event-service payload speaking the pilot's range protocol (docs/eventservice.md); stdlib only.

Reads ranges from $PILOT_ES_RANGES, "processes" each for --sleep seconds, writes one output file per range and
answers on $PILOT_ES_REPLIES; exits 0 when told "end". Used by the tests and bench/es.py, and meant as the
reference for writing one in any language: the whole protocol is these two line-based JSON FIFOs.

    python3 example_payload.py [--sleep S] [--fail-every N] [--size BYTES]
"""

import argparse
import json
import os
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds of 'work' per range")
    parser.add_argument("--fail-every", type=int, default=0, help="answer every N-th range failed (0: never)")
    parser.add_argument("--size", type=int, default=64, help="bytes of output per range")
    args = parser.parse_args()
    done = 0
    with open(os.environ["PILOT_ES_RANGES"], encoding="utf-8") as ranges, \
            open(os.environ["PILOT_ES_REPLIES"], "w", encoding="utf-8", buffering=1) as replies:
        for line in ranges:
            message = json.loads(line)
            if message.get("type") == "end":
                break
            range_id = message["eventRangeID"]
            time.sleep(args.sleep)
            done += 1
            if args.fail_every and done % args.fail_every == 0:
                replies.write(json.dumps({"eventRangeID": range_id, "status": "failed", "errorCode": 1224,
                                          "errorDiag": "example failure"}) + "\n")
                continue
            name = f"out_{done}.dat"
            with open(name, "w", encoding="utf-8") as out:
                text = f"{range_id} {message.get('startEvent')}-{message.get('lastEvent')}\n"
                out.write((text * (args.size // len(text) + 1))[:max(args.size, len(text))])
            replies.write(json.dumps({"eventRangeID": range_id, "status": "finished", "output": name}) + "\n")
    print(f"example payload: {done} range(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
