# Which firmware image runs: the first stage of the meter, flashed by cable with main.py
# and never replaced over the air (an update replaces gtx/ and lib/, see gtx/ota.py).
# It imports nothing from gtx, so a broken image cannot break the choice of image.
#
# State in <data>/ota/state.json (written atomically: a power cut leaves the old or the
# new): the confirmed image's slot ("a", "b", or None for the image flashed by cable),
# version and SHA-256, and a trial image with the boots it has had. A trial image gets one
# boot to confirm a good start (after its first full cycle, gtx/app.py); if the meter
# starts again before that (it crashed, hung into the watchdog or lost power), the
# confirmed image runs again and the trial is recorded as rolled_back.
import json
import os
import sys


def _dir(data: str) -> str:
    return data + "/ota"


def state(data: str) -> dict:
    try:
        with open(_dir(data) + "/state.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"running": None, "version": 0, "sha256": "", "trial": None, "tries": 0}


def save(data: str, s: dict) -> None:
    path = _dir(data) + "/state.json"
    with open(path + ".tmp", "w") as f:
        f.write(json.dumps(s))
    os.rename(path + ".tmp", path)


def running(data: str) -> tuple:
    """(version, SHA-256 hex, on trial) of the image that runs now: what the status says."""
    s = state(data)
    t = s["trial"]
    if t is not None and s["tries"]:
        return t["version"], t["sha256"], True
    return s["version"], s["sha256"], False


def boot(data: str) -> str | None:
    """At start: the slot to run (None: the image flashed by cable)."""
    s = state(data)
    trial = s["trial"]
    if trial is None:
        return s["running"]
    if s["tries"] >= 1:  # it had its boot and did not confirm: it failed to start
        s["trial"] = None
        s["tries"] = 0
        s["rolled_back"] = {"version": trial["version"], "sha256": trial["sha256"]}
        save(data, s)
        return s["running"]
    s["tries"] = 1
    save(data, s)
    return trial["slot"]


def confirm(data: str) -> None:
    """The trial image ran a full cycle: it becomes the confirmed one, the old one stays
    in the other slot."""
    s = state(data)
    trial = s["trial"]
    if trial is None:
        return
    s["previous"] = {"slot": s["running"], "version": s["version"], "sha256": s["sha256"]}
    s["running"], s["version"], s["sha256"] = trial["slot"], trial["version"], trial["sha256"]
    s["trial"] = None
    s["tries"] = 0
    save(data, s)


def start(config_path: str) -> tuple:
    """Put the chosen slot's files before the flashed ones on the import path; returns
    (version, SHA-256, on trial) of the image that will run, for its status."""
    try:
        with open(config_path) as f:
            data = json.load(f).get("data_dir", "data")
    except (OSError, ValueError):
        return 0, b"", False  # gtx.app reports the bad config
    slot = boot(data)
    if slot is not None:
        here = _dir(data) + "/" + slot
        sys.path.insert(0, here + "/lib")
        sys.path.insert(0, here)
    return image(data)


def image(data: str) -> tuple:
    version, digest, trial = running(data)
    return version, bytes.fromhex(digest), trial


def failed(exc: Exception) -> None:
    """The image raised out of its main loop: on a board, restart (the next boot rolls
    a trial image back); on the unix port, exit non-zero for whoever runs it."""
    sys.print_exception(exc)
    try:
        import machine

        machine.reset()
    except (ImportError, AttributeError):  # the unix port's machine has no reset
        sys.exit(1)


def restart() -> None:
    """Start again (into a new trial image): machine.reset() on a board; the unix port
    exits with 75 for whoever runs it to start it again."""
    try:
        import machine

        machine.reset()
    except (ImportError, AttributeError):
        sys.exit(75)
