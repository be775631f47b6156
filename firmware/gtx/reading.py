# The signed reading and status messages of docs/wire-format.md.
from gtx import cbor, ed25519

READING_DOMAIN = b"gridtokenx/reading/v1\x00"
STATUS_DOMAIN = b"gridtokenx/status/v1\x00"
FLAG_TIME_NOT_SET = 1
TOPIC_PREFIX = "gtx/v1/meters/"


def encode_reading(
    meter_id: str,
    seq: int,
    ts: int,
    import_wh: int,
    export_wh: int,
    interval_s: int,
    voltage_dv: int,
    current_ma: int,
    pf_milli: int,
    freq_chz: int,
    flags: int,
) -> bytes:
    """The reading's CBOR map: key 0 the version, keys 1..11 the fields in spec order."""
    return cbor.encode(
        {
            0: 1,
            1: meter_id,
            2: seq,
            3: ts,
            4: import_wh,
            5: export_wh,
            6: interval_s,
            7: voltage_dv,
            8: current_ma,
            9: pf_milli,
            10: freq_chz,
            11: flags,
        }
    )


def encode_status(
    meter_id: str,
    ts: int,
    uptime_s: int,
    last_seq: int,
    buffered: int,
    dropped: int,
    fault: str,
    image: tuple,
) -> bytes:
    """Keys 8 and 9: the running image's version and SHA-256 (image[0], image[1]; 0 and
    empty for the image flashed by cable, whose hash the meter does not know)."""
    return cbor.encode(
        {
            0: 1,
            1: meter_id,
            2: ts,
            3: uptime_s,
            4: last_seq,
            5: buffered,
            6: dropped,
            7: fault,
            8: image[0],
            9: image[1],
        }
    )


def seal(message: bytes, domain: bytes, seed: bytes, public: bytes) -> bytes:
    """The envelope [message, Ed25519 signature over domain + message], as CBOR."""
    return cbor.encode([message, ed25519.sign(seed, domain + message, public)])


def reading_topic(meter_id: str) -> str:
    return TOPIC_PREFIX + meter_id + "/reading"


def status_topic(meter_id: str) -> str:
    return TOPIC_PREFIX + meter_id + "/status"
