"""The fleet's MQTT broker: a devices file in, a locked-down Mosquitto configuration out.

A devices file says which devices may connect and which agents each one hosts:

```yaml
fleet: home                      # topic prefix fleetmind/home (default: "default")
listeners:                       # default: one plain listener on 127.0.0.1:1883
  - {port: 1883, bind: 127.0.0.1}
  - {port: 8883, bind: 0.0.0.0, tls: {cafile: ca.crt, certfile: server.crt, keyfile: server.key}}
orchestrators:                   # may read and write everything under the fleet's prefix
  - {username: orchestrator, password_env: FLEETMIND_ORCH_PASSWORD}
devices:                         # the username of a device is its id
  - {id: pi-7, password: s3cret, agents: [camera, thermostat]}
  - {id: phone, password_env: PHONE_PW, agents: [notes]}
```

:func:`write_broker_config` turns it into a directory that ``mosquitto -c DIR/mosquitto.conf``
runs: anonymous clients refused, hashed passwords, and an ACL that follows
:mod:`fleetmind.protocols._topics` (a device reads only its own inboxes and writes only its own
cards, presence and output). :func:`serve` starts Mosquitto on such a directory. Only Mosquitto
is supported: an embedded broker is not provided yet, so without Mosquitto :func:`serve` raises
a :class:`~fleetmind.errors.ConfigError` that says what to install.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any, Self

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from fleetmind._extras import require
from fleetmind._ids import is_valid_id
from fleetmind._validation import describe_validation_error
from fleetmind.errors import ConfigError
from fleetmind.protocols._topics import DEFAULT_FLEET, Topics

CONF_FILE = "mosquitto.conf"
PASSWORD_FILE = "passwords"
ACL_FILE = "acl"
DATA_DIR = "data"
SUMMARY_FILE = "fleetmind-broker.json"
LOG_FILE = "mosquitto.log"
EMBEDDED_LOG_FILE = "embedded-broker.log"

# Mosquitto 2's own defaults for `mosquitto_passwd` (hash type 7).
_PBKDF2_ITERATIONS = 101
_PBKDF2_SALT_BYTES = 12

INSTALL_HINT = (
    "on Debian/Ubuntu run `apt-get install mosquitto`; on macOS `brew install mosquitto`; "
    "elsewhere see https://mosquitto.org/download/"
)
# Debian puts the broker in /usr/sbin, which is not on an ordinary user's PATH.
_EXTRA_BIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")


# The devices file, as written by a person (validated at the boundary) ------------------------


def _valid_id(value: str) -> str:
    if not is_valid_id(value):
        raise ValueError(f"{value!r} is not a valid id (letters, digits, '.', '_', '-'; max 64)")
    return value


_Id = Annotated[str, AfterValidator(_valid_id)]


class _TlsModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cafile: str | None = None
    certfile: str
    keyfile: str
    require_certificate: bool = False


class _ListenerModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int = Field(ge=1, le=65535)
    bind: str = Field(default="127.0.0.1", pattern=r"^[A-Za-z0-9.:_-]+$")
    tls: _TlsModel | None = None


class _SecretModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str | None = Field(default=None, min_length=1, repr=False)
    password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class _OrchestratorModel(_SecretModel):
    username: _Id


class _DeviceModel(_SecretModel):
    id: _Id
    agents: list[_Id] = Field(default_factory=list)


class _DevicesFileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fleet: _Id = DEFAULT_FLEET
    listeners: list[_ListenerModel] = Field(
        default_factory=lambda: [_ListenerModel(port=1883)], min_length=1
    )
    orchestrators: list[_OrchestratorModel] = Field(min_length=1)
    devices: list[_DeviceModel] = Field(default_factory=list)


# What the rest of fleetmind works with ------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """A listener's certificate files, as absolute paths."""

    certfile: Path
    keyfile: Path
    cafile: Path | None = None
    require_certificate: bool = False


@dataclass(frozen=True)
class Listener:
    """One port the broker listens on."""

    port: int
    bind: str = "127.0.0.1"
    tls: TlsFiles | None = None

    @property
    def connect_host(self) -> str:
        """Where a client on this machine reaches the listener (a wildcard bind means loopback)."""
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.bind, self.bind)

    def describe(self) -> str:
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"{host}:{self.port}" + (" (TLS)" if self.tls else "")


@dataclass(frozen=True)
class Account:
    """A broker user: an orchestrator, or a device with the agents it hosts."""

    username: str
    password: str = field(repr=False)
    orchestrator: bool = False
    agents: tuple[str, ...] = ()


@dataclass(frozen=True)
class DevicesFile:
    """A validated devices file, passwords resolved (they are never written out in plain)."""

    fleet: str
    listeners: tuple[Listener, ...]
    accounts: tuple[Account, ...]
    source: Path | None = None

    @property
    def orchestrators(self) -> tuple[Account, ...]:
        return tuple(a for a in self.accounts if a.orchestrator)

    @property
    def devices(self) -> tuple[Account, ...]:
        return tuple(a for a in self.accounts if not a.orchestrator)


def load_devices_file(path: Path, *, env: Mapping[str, str] | None = None) -> DevicesFile:
    """Read and check a devices file; every mistake is a one-line :class:`ConfigError`.

    Args:
        path: the YAML file.
        env: where ``password_env`` names are looked up (default: ``os.environ``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read devices file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: malformed YAML: {problem}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'orchestrators' and 'devices'")
    try:
        spec = _DevicesFileModel.model_validate(data)
    except ValidationError as exc:
        problem = describe_validation_error(exc, plain=True, model=_DevicesFileModel)
        raise ConfigError(f"{path}: {problem}") from exc
    return _resolve(spec, path, os.environ if env is None else env)


def _resolve(spec: _DevicesFileModel, path: Path, env: Mapping[str, str]) -> DevicesFile:
    base = path.resolve().parent

    def fail(where: str, message: str) -> ConfigError:
        return ConfigError(f"{path}: {where}: {message}")

    def password(entry: _SecretModel, where: str) -> str:
        if (entry.password is None) == (entry.password_env is None):
            raise fail(where, "give exactly one of 'password' or 'password_env'")
        if entry.password is not None:
            return entry.password
        value = env.get(entry.password_env or "")
        if not value:
            raise fail(where, f"environment variable {entry.password_env} is not set")
        return value

    def tls_file(name: str, where: str) -> Path:
        file = (base / os.path.expanduser(name)).resolve()
        if not file.is_file():
            raise fail(where, f"file not found: {file}")
        return file

    listeners: list[Listener] = []
    for i, lst in enumerate(spec.listeners, start=1):
        where = f"listeners[{i}]"
        if any((lst.port, lst.bind) == (x.port, x.bind) for x in listeners):
            raise fail(f"{where}.port", f"{lst.bind}:{lst.port} is listed twice")
        tls = None
        if lst.tls is not None:
            if lst.tls.require_certificate and lst.tls.cafile is None:
                raise fail(f"{where}.tls", "require_certificate needs a cafile")
            ca = lst.tls.cafile
            tls = TlsFiles(
                certfile=tls_file(lst.tls.certfile, f"{where}.tls.certfile"),
                keyfile=tls_file(lst.tls.keyfile, f"{where}.tls.keyfile"),
                cafile=tls_file(ca, f"{where}.tls.cafile") if ca is not None else None,
                require_certificate=lst.tls.require_certificate,
            )
        listeners.append(Listener(port=lst.port, bind=lst.bind, tls=tls))

    accounts: list[Account] = []
    users: dict[str, str] = {}
    for i, orch in enumerate(spec.orchestrators, start=1):
        where = f"orchestrators[{i}]"
        if orch.username in users:
            raise fail(f"{where}.username", f"{orch.username!r} is already {users[orch.username]}")
        users[orch.username] = f"used by {where}"
        accounts.append(Account(orch.username, password(orch, where), orchestrator=True))
    for i, dev in enumerate(spec.devices, start=1):
        where = f"devices[{i}]"
        if dev.id in users:
            raise fail(f"{where}.id", f"duplicate device id {dev.id!r} (already {users[dev.id]})")
        users[dev.id] = f"used by {where}"
        for j, agent in enumerate(dev.agents, start=1):
            if agent in dev.agents[: j - 1]:
                raise fail(f"{where}.agents[{j}]", f"agent {agent!r} is listed twice")
        accounts.append(Account(dev.id, password(dev, where), agents=tuple(dev.agents)))
    return DevicesFile(
        fleet=spec.fleet, listeners=tuple(listeners), accounts=tuple(accounts), source=path
    )


# Rendering (pure) ---------------------------------------------------------------------------


def acl_text(devices: DevicesFile) -> str:
    """The Mosquitto ACL of a fleet, following the topic scheme in ``_topics.py``.

    Mosquitto checks a shared subscription (``$share/<group>/<filter>``) against ``<filter>``,
    so ``readwrite <prefix>/#`` is all an orchestrator replica needs to share submitted tasks.
    """
    topics = Topics(devices.fleet)
    lines = [
        "# Generated by `fleetmind broker config`: regenerate it instead of editing.",
        "# A device reads only its own inbox and writes only its own cards, presence and output.",
    ]
    for acc in devices.orchestrators:
        lines += ["", f"user {acc.username}", f"topic readwrite {topics.everything}"]
    for acc in devices.devices:
        device = acc.username
        lines += ["", f"user {device}"]
        lines.append(f"topic read {topics.device_inbox(device)}")
        # Its own inbox, to write: the marker it sends itself after reconnecting.
        lines.append(f"topic write {topics.device_inbox(device)}")
        lines += [f"topic write {topics.card(device, a)}" for a in acc.agents]
        lines.append(f"topic write {topics.presence(device)}")
        lines.append(f"topic write {topics.device_out(device)}")
        lines.append(f"topic write {topics.device_out(device)}/+")  # replies to a replica
    return "\n".join(lines) + "\n"


def mosquitto_conf_text(devices: DevicesFile, config_dir: Path, *, run_as: str) -> str:
    """The ``mosquitto.conf`` for a fleet whose generated files live in ``config_dir``."""
    config_dir = config_dir.resolve()
    source = f" from {devices.source.resolve()}" if devices.source else ""
    lines = [
        f"# Generated by `fleetmind broker config`{source}.",
        "# Regenerate it instead of editing: the ACL and password file are rebuilt together.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {config_dir / PASSWORD_FILE}",
        f"acl_file {config_dir / ACL_FILE}",
        "",
        "# QoS 1 sessions and retained presence/cards survive a restart.",
        "persistence true",
        f"persistence_location {config_dir / DATA_DIR}/",
        "autosave_on_changes false",
        "autosave_interval 1",
        # Small messages both ways: without this every QoS 1 round trip waits for Nagle.
        "set_tcp_nodelay true",
        # A fan-out can queue thousands of dispatches or results for one client; the default
        # limit (1,000) silently drops the rest.
        "max_queued_messages 1000000",
        "",
        "# Started as root, Mosquitto switches to this account: the one that owns these files.",
        f"user {run_as}",
    ]
    for lst in devices.listeners:
        lines += ["", f"listener {lst.port} {lst.bind}"]
        if lst.tls is not None:
            if lst.tls.cafile is not None:
                lines.append(f"cafile {lst.tls.cafile}")
            lines += [f"certfile {lst.tls.certfile}", f"keyfile {lst.tls.keyfile}"]
            lines.append(f"require_certificate {str(lst.tls.require_certificate).lower()}")
    return "\n".join(lines) + "\n"


# Writing the configuration directory --------------------------------------------------------


@dataclass(frozen=True)
class BrokerConfig:
    """What :func:`write_broker_config` wrote; also saved as ``fleetmind-broker.json``."""

    fleet: str
    config_dir: Path
    listeners: tuple[Listener, ...]
    orchestrators: tuple[str, ...]
    devices: dict[str, tuple[str, ...]]

    @property
    def conf_file(self) -> Path:
        return self.config_dir / CONF_FILE

    @property
    def password_file(self) -> Path:
        return self.config_dir / PASSWORD_FILE

    @property
    def acl_file(self) -> Path:
        return self.config_dir / ACL_FILE

    @property
    def data_dir(self) -> Path:
        return self.config_dir / DATA_DIR

    @property
    def topics(self) -> Topics:
        return Topics(self.fleet)

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON data (no passwords)."""

        def tls(t: TlsFiles | None) -> dict[str, Any] | None:
            if t is None:
                return None
            paths = {"certfile": t.certfile, "keyfile": t.keyfile, "cafile": t.cafile}
            out: dict[str, Any] = {k: str(v) if v else None for k, v in paths.items()}
            return {**out, "require_certificate": t.require_certificate}

        return {
            "fleet": self.fleet,
            "prefix": self.topics.prefix,
            "config_dir": str(self.config_dir),
            "conf_file": str(self.conf_file),
            "password_file": str(self.password_file),
            "acl_file": str(self.acl_file),
            "data_dir": str(self.data_dir),
            "listeners": [
                {"port": x.port, "bind": x.bind, "tls": tls(x.tls)} for x in self.listeners
            ],
            "orchestrators": list(self.orchestrators),
            "devices": {k: list(v) for k, v in self.devices.items()},
        }

    @classmethod
    def load(cls, config_dir: Path) -> Self:
        """Read the summary that :func:`write_broker_config` left in ``config_dir``."""
        config_dir = Path(config_dir).resolve()
        summary = config_dir / SUMMARY_FILE
        if not summary.is_file():
            raise ConfigError(
                f"{config_dir} is not a broker directory (no {SUMMARY_FILE}); "
                "create one with: fleetmind broker config --devices FILE --out DIR"
            )
        try:
            data = json.loads(summary.read_text(encoding="utf-8"))
            listeners = tuple(
                Listener(
                    port=int(x["port"]),
                    bind=str(x["bind"]),
                    tls=None
                    if x.get("tls") is None
                    else TlsFiles(
                        certfile=Path(x["tls"]["certfile"]),
                        keyfile=Path(x["tls"]["keyfile"]),
                        cafile=Path(x["tls"]["cafile"]) if x["tls"].get("cafile") else None,
                        require_certificate=bool(x["tls"]["require_certificate"]),
                    ),
                )
                for x in data["listeners"]
            )
            return cls(
                fleet=str(data["fleet"]),
                config_dir=config_dir,
                listeners=listeners,
                orchestrators=tuple(data["orchestrators"]),
                devices={k: tuple(v) for k, v in data["devices"].items()},
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{summary}: unreadable broker summary ({exc!r})") from exc


def write_broker_config(devices_file: Path | DevicesFile, out_dir: Path) -> BrokerConfig:
    """Write a Mosquitto configuration for a fleet into ``out_dir`` and return its summary.

    Writes ``mosquitto.conf``, ``passwords`` (PBKDF2-SHA512 hashes in Mosquitto's format; plain
    passwords never touch the disk), ``acl``, ``fleetmind-broker.json`` and an empty ``data/`` for
    persistence. Running it again on the same directory replaces the files and keeps ``data/``.

    Args:
        devices_file: a devices file (YAML), or one already loaded with :func:`load_devices_file`.
        out_dir: the directory to write; created when missing.
    """
    if isinstance(devices_file, DevicesFile):
        devices = devices_file
    else:
        devices = load_devices_file(devices_file)
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} is a file, not a directory")
    (out_dir / DATA_DIR).mkdir(parents=True, exist_ok=True)
    _write_password_file(devices.accounts, out_dir / PASSWORD_FILE)
    _write_text(out_dir / ACL_FILE, acl_text(devices))
    _write_text(out_dir / CONF_FILE, mosquitto_conf_text(devices, out_dir, run_as=_current_user()))
    config = BrokerConfig(
        fleet=devices.fleet,
        config_dir=out_dir,
        listeners=devices.listeners,
        orchestrators=tuple(a.username for a in devices.orchestrators),
        devices={a.username: a.agents for a in devices.devices},
    )
    _write_text(out_dir / SUMMARY_FILE, json.dumps(config.to_json(), indent=2) + "\n")
    return config


def mosquitto_password_hash(password: str, *, salt: bytes | None = None) -> str:
    """A password as Mosquitto 2 stores it: PBKDF2-SHA512, ``$7$ITERATIONS$SALT$HASH``.

    Computed here rather than by ``mosquitto_passwd`` so that a configuration can be written on
    a machine without Mosquitto (and deployed to the one that has it).
    """
    salt = salt if salt is not None else secrets.token_bytes(_PBKDF2_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, _PBKDF2_ITERATIONS)
    encode = base64.b64encode
    return f"$7${_PBKDF2_ITERATIONS}${encode(salt).decode()}${encode(digest).decode()}"


def _write_password_file(accounts: tuple[Account, ...], target: Path) -> None:
    lines = [f"{acc.username}:{mosquitto_password_hash(acc.password)}\n" for acc in accounts]
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(lines)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _current_user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):  # pragma: no cover - not a POSIX system
        import getpass

        return getpass.getuser()


def _find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    extra = os.pathsep.join(_EXTRA_BIN_DIRS)
    return shutil.which(name, path=extra)


def _one_line(text: str, *, last: int = 3) -> str:
    """The last few lines of a log as one line, without Mosquitto's timestamps."""
    lines = [re.sub(r"^\d+: ", "", ln.strip()) for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines[-last:])


# Running the broker ---------------------------------------------------------------------------


@functools.cache
def _mosquitto_version(binary: str) -> str:
    # `mosquitto -h` prints "mosquitto version 2.0.11" and exits with code 3.
    try:
        done = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    found = re.search(r"mosquitto version (\S+)", done.stdout + done.stderr)
    return found.group(1) if found else "unknown"


class BrokerProcess:
    """A running broker started by :func:`serve`; stop it with :meth:`stop` or ``with``.

    Either Mosquitto with the fleet's configuration, or the embedded development broker
    (``embedded`` is then true and ``lacks`` says what it cannot do).
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        config: BrokerConfig | None,
        version: str,
        log: IO[bytes],
        *,
        name: str = "mosquitto",
        listeners: tuple[Listener, ...] | None = None,
        lacks: str | None = None,
    ) -> None:
        self._process = process
        self._log = log
        self.config = config
        self.name = name
        self.version = version
        self.log_file = Path(log.name)
        self.listeners = listeners if listeners is not None else config.listeners if config else ()
        self.lacks = lacks

    @property
    def embedded(self) -> bool:
        """Whether this is the embedded development broker rather than Mosquitto."""
        return self.lacks is not None

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._process.poll()

    def describe(self) -> str:
        """E.g. ``mosquitto 2.0.11 on 127.0.0.1:1883``."""
        where = ", ".join(lst.describe() for lst in self.listeners)
        return f"{self.name} {self.version} on {where}"

    def wait(self, timeout_s: float | None = None) -> int:
        """Wait for the broker to exit; returns its exit code."""
        return self._process.wait(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the broker (Mosquitto saves its persistence file on the way out); idempotent."""
        try:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
        finally:
            self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}"
        return f"<BrokerProcess pid={self.pid} {state}: {self.describe()}>"


def mosquitto_installed() -> bool:
    """Whether a Mosquitto binary can be found (also in the sbin directories)."""
    return _find_binary("mosquitto") is not None


def serve_broker(
    config_dir: Path,
    *,
    log_file: Path | None = None,
    timeout_s: float = 10.0,
    embedded: bool | None = None,
) -> BrokerProcess:
    """Start the fleet's broker on a directory written by :func:`write_broker_config`.

    Mosquitto runs with the directory's configuration when it is installed. Without it (or with
    ``embedded=True``) the embedded development broker serves the same ports on 127.0.0.1,
    without passwords, ACL or TLS (TLS listeners are left out); ``embedded=False`` insists on
    Mosquitto. Returns once every listener accepts TCP connections. The broker's log goes to
    ``log_file`` (default ``CONFIG_DIR/mosquitto.log`` or ``CONFIG_DIR/embedded-broker.log``),
    so a chatty broker never blocks on a full pipe.

    Raises:
        ConfigError: no broker directory, Mosquitto missing when it is required, a port already
            taken, or the broker exiting (or not listening) before ``timeout_s``; the message
            ends with its log.
    """
    config = BrokerConfig.load(config_dir)
    binary = _find_binary("mosquitto")
    if embedded or (embedded is None and binary is None):
        plain = tuple(lst for lst in config.listeners if lst.tls is None)
        if not plain:
            raise ConfigError(
                "the embedded broker cannot serve TLS listeners and this configuration has "
                f"no other; install Mosquitto ({INSTALL_HINT})"
            )
        path = Path(log_file) if log_file else config.config_dir / EMBEDDED_LOG_FILE
        return serve_embedded([lst.port for lst in plain], log_file=path, timeout_s=timeout_s)
    if binary is None:
        raise ConfigError(f"mosquitto is not installed: {INSTALL_HINT}")
    _check_ports_free(config.listeners)
    log_path = Path(log_file) if log_file else config.config_dir / LOG_FILE
    command = [binary, "-c", str(config.conf_file)]
    process, log, start = _spawn(command, log_path)
    broker = BrokerProcess(process, config, _mosquitto_version(binary), log)
    _wait_or_stop(broker, log_path, start=start, timeout_s=timeout_s)
    return broker


def serve_embedded(ports: list[int], *, log_file: Path, timeout_s: float = 10.0) -> BrokerProcess:
    """Start the embedded development broker (amqtt) on ``127.0.0.1`` at ``ports``."""
    require("amqtt.broker", "broker", "the embedded development broker")
    from fleetmind.protocols._embedded_broker import LIMITATIONS, LOOPBACK, amqtt_version

    listeners = tuple(Listener(port, bind=LOOPBACK) for port in ports)
    _check_ports_free(listeners)
    command = [sys.executable, "-m", "fleetmind.protocols._embedded_broker"]
    for port in ports:
        command += ["--port", str(port)]
    process, log, start = _spawn(command, Path(log_file))
    broker = BrokerProcess(
        process,
        None,
        amqtt_version(),
        log,
        name="amqtt (embedded)",
        listeners=listeners,
        lacks=LIMITATIONS,
    )
    _wait_or_stop(broker, Path(log_file), start=start, timeout_s=timeout_s)
    return broker


def _check_ports_free(listeners: tuple[Listener, ...]) -> None:
    for lst in listeners:
        if _accepts(lst.connect_host, lst.port):
            raise ConfigError(
                f"port {lst.port} on {lst.connect_host} is already in use by another program"
            )


def _spawn(command: list[str], log_path: Path) -> tuple[subprocess.Popen[bytes], IO[bytes], int]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the BrokerProcess, closed by stop()
    # Taken before the start: the broker shares the file's offset, and may write at once.
    start = log.tell()
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    except OSError as exc:
        log.close()
        raise ConfigError(f"cannot start {command[0]}: {exc.strerror or exc}") from exc
    return process, log, start


def _wait_or_stop(broker: BrokerProcess, log_path: Path, *, start: int, timeout_s: float) -> None:
    try:
        _wait_listening(broker, log_path, start=start, timeout_s=timeout_s)
    except BaseException:
        broker.stop()
        raise


def _wait_listening(broker: BrokerProcess, log_path: Path, *, start: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(broker.listeners)
    while pending:
        if not broker.running:
            raise ConfigError(
                f"{broker.name} exited with code {broker.returncode} before listening: "
                f"{_log_since(log_path, start) or 'no output'} (log: {log_path})"
            )
        if _accepts(pending[0].connect_host, pending[0].port):
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            where = f"{pending[0].connect_host}:{pending[0].port}"
            raise ConfigError(
                f"{broker.name} did not listen on {where} within {timeout_s:g} s: "
                f"{_log_since(log_path, start) or 'no output'} (log: {log_path})"
            )
        time.sleep(0.02)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _log_since(path: Path, start: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            return _one_line(f.read().decode("utf-8", "replace"))
    except OSError:
        return ""


def __getattr__(name: str) -> object:
    # `serve` was this function's first name; `fleetmind.serve` is now a package of its own.
    if name == "serve":
        warnings.warn(
            "fleetmind.protocols._broker.serve is deprecated: use fleetmind.protocols.serve_broker",
            DeprecationWarning,
            stacklevel=2,
        )
        return serve_broker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
