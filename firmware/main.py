# Meter entry point. On a board MicroPython runs this at boot; on the unix port:
#   MICROPYPATH=firmware:firmware/lib micropython firmware/main.py [config.json] [max_readings]
# bootslot (flashed with this file, never replaced over the air) picks the image to run.
import sys

import bootslot

args = getattr(sys, "argv", [])
config = args[1] if len(args) > 1 else "config.json"
limit = int(args[2]) if len(args) > 2 else 0
image = bootslot.start(config)
try:
    from gtx import app

    app.run(config, limit, image)
except Exception as exc:  # a trial image that cannot start is rolled back at the restart
    bootslot.failed(exc)
