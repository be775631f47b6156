"""MQTT credentials and the brokers' ACL, generated from the hub's registry.

Each meter logs in to the broker as its meter id with a random password the hub issues
once (`gridtokenx hub meter add` prints it, nothing stores it: the database keeps a
PBKDF2-SHA512 hash in Mosquitto's `$7$` format). The hub logs in as `@hub`, a name no meter
can have ('@' is outside the meter id alphabet). From the registry the hub writes two
files, 0600, that Mosquitto (deploy/mosquitto/) and the embedded broker (broker.py) both
read: `passwd` and `acl`, where a meter may publish only its own reading and status topics
and read only its own ack, and only the hub reads readings and statuses and writes acks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import BigInteger, Column, Engine, String, Table, delete, insert, select

from gridtokenx.hub import schema
from gridtokenx.hub.updates import OFFER_TOPIC
from gridtokenx.wire.ack import ACKS, ack_topic
from gridtokenx.wire.topics import READINGS, STATUSES, reading_topic, status_topic

HUB_USER = "@hub"
ITERATIONS = 1000  # the passwords are 192 random bits: the hash need not be slow
PASSWD, ACL = "passwd", "acl"

credentials = Table(
    "mqtt_credentials",
    schema.metadata,
    Column("username", String(64), primary_key=True),
    Column("role", String(8), nullable=False),  # "meter" or "hub"
    Column("password_hash", String(200), nullable=False),
    Column("issued_at", BigInteger, nullable=False),
)


def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """`$7$iterations$salt$hash`, base64: what mosquitto_passwd writes for Mosquitto 2."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
        if kind != "7" or not 0 < int(iterations) <= 1_000_000:
            return False
        expected = base64.b64decode(digest, validate=True)
        got = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt, validate=True), int(iterations)
        )
    except ValueError:  # a malformed line: nobody logs in with it
        return False
    return hmac.compare_digest(got, expected)


def issue(engine: Engine, username: str, role: str) -> str:
    """A new password for `username` (replacing any earlier one); returned, never stored."""
    password = secrets.token_urlsafe(24)
    with engine.begin() as c:
        c.execute(delete(credentials).where(credentials.c.username == username))
        c.execute(
            insert(credentials).values(
                username=username,
                role=role,
                password_hash=hash_password(password),
                issued_at=int(time.time()),
            )
        )
    return password


def issue_many(engine: Engine, usernames: list[str], role: str) -> dict[str, str]:
    """`issue` for many users in one transaction (enrolling a fleet): username: password."""
    passwords = {name: secrets.token_urlsafe(24) for name in usernames}
    now = int(time.time())
    with engine.begin() as c:
        if passwords:
            c.execute(delete(credentials).where(credentials.c.username.in_(list(passwords))))
            c.execute(
                insert(credentials),
                [
                    {
                        "username": name,
                        "role": role,
                        "password_hash": hash_password(password),
                        "issued_at": now,
                    }
                    for name, password in passwords.items()
                ],
            )
    return passwords


def revoke(engine: Engine, username: str) -> None:
    with engine.begin() as c:
        c.execute(delete(credentials).where(credentials.c.username == username))


@dataclass
class Rules:
    """Who may do what: usernames to password hashes, and per user the topic filters it
    may read (subscribe, receive) and write (publish)."""

    hashes: dict[str, str] = field(default_factory=dict)
    read: dict[str, list[str]] = field(default_factory=dict)
    write: dict[str, list[str]] = field(default_factory=dict)


def rules(engine: Engine) -> Rules:
    out = Rules()
    with engine.connect() as c:
        rows = c.execute(select(credentials).order_by(credentials.c.username)).all()
    for row in rows:
        out.hashes[row.username] = row.password_hash
        if row.role == "hub":
            out.read[row.username] = [READINGS, STATUSES]
            out.write[row.username] = [ACKS, OFFER_TOPIC]
        else:
            meter = row.username
            out.read[meter] = [ack_topic(meter), OFFER_TOPIC]
            out.write[meter] = [reading_topic(meter), status_topic(meter)]
    return out


def render(r: Rules) -> tuple[str, str]:
    """The `passwd` and `acl` files (Mosquitto's formats) of these rules."""
    passwd = "".join(f"{user}:{hashed}\n" for user, hashed in r.hashes.items())
    acl = ["# generated by `gridtokenx hub broker-auth` from the hub's registry: do not edit"]
    for user in r.hashes:
        acl += ["", f"user {user}"]
        acl += [f"topic read {t}" for t in r.read.get(user, [])]
        acl += [f"topic write {t}" for t in r.write.get(user, [])]
    return passwd, "\n".join(acl) + "\n"


def parse(passwd: str, acl: str) -> Rules:
    """Read the two files back (the subset of Mosquitto's formats render() writes)."""
    out = Rules()
    for line in passwd.splitlines():
        name, sep, hashed = line.strip().partition(":")
        if sep and name and not name.startswith("#"):
            out.hashes[name] = hashed
    user: str | None = None
    for line in acl.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "user":
            user = words[1]
        elif len(words) == 3 and words[0] == "topic" and user is not None:
            if words[1] in ("read", "readwrite"):
                out.read.setdefault(user, []).append(words[2])
            if words[1] in ("write", "readwrite"):
                out.write.setdefault(user, []).append(words[2])
    return out


def write_secret(path: Path, text: str) -> None:
    """Write `text` to `path`, mode 0600 from the first byte, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)  # an old temporary file kept its mode
    os.replace(tmp, path)


def write_files(engine: Engine, directory: Path) -> tuple[Path, Path]:
    """Write `passwd` and `acl` into `directory`, 0600, each replaced atomically."""
    passwd, acl = render(rules(engine))
    write_secret(directory / PASSWD, passwd)
    write_secret(directory / ACL, acl)
    return directory / PASSWD, directory / ACL


def allowed(filters: list[str], topic: str) -> bool:
    """Whether `topic` (a topic, or a subscription's filter) is within one of `filters`:
    '+' in a filter stands for one level, '#' for the rest; a '+' or '#' asked for is
    allowed only where the filter has one too."""
    asked = topic.split("/")
    for f in filters:
        levels = f.split("/")
        for i, level in enumerate(levels):
            if level == "#":
                return True
            if i >= len(asked) or (level != "+" and level != asked[i]) or asked[i] == "#":
                break
        else:
            if len(asked) == len(levels):
                return True
    return False
