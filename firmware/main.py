# Meter entry point. On a board MicroPython runs this at boot; on the unix port:
#   MICROPYPATH=firmware:firmware/lib micropython firmware/main.py [config.json] [max_readings]
import sys

from gtx import app

args = getattr(sys, "argv", [])
config = args[1] if len(args) > 1 else "config.json"
limit = int(args[2]) if len(args) > 2 else 0
app.run(config, limit)
