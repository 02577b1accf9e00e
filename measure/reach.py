"""From a --target name to a Target: 'local', 'ssh://user@host[:port]', an ssh_config
Host alias ('raspberrypi'), or 'testbed:NAME' (an emulated board that is up).

Above both measure/ssh.py and measure/testbed/: the testbed's state (its port, key and
host key) is looked up here and handed to an SshTarget, so neither imports the other
in a circle.
"""

from urllib.parse import urlsplit

from edgeio.errors import UserError
from measure.targets import LocalTarget, Target

FORMS = "use 'local', ssh://user@host[:port], an ssh_config Host alias or testbed:BOARD"


def parse_target(spec: str, identity: str | None = None, known_hosts: str | None = None) -> Target:
    """The Target `spec` names (an SshTarget connects on first use).

    identity / known_hosts default to $EDGEIO_SSH_KEY / $EDGEIO_SSH_KNOWN_HOSTS, then to
    the ssh_config (IdentityFile, UserKnownHostsFile) and ssh's own defaults (~/.ssh/id_*,
    the agent, ~/.ssh/known_hosts).
    """
    text = (spec or "").strip()
    if text in ("", "local"):
        return LocalTarget()
    from measure.ssh import SshTarget, config_aliases, ssh_config
    if text.startswith("testbed:"):
        from measure.testbed import resolve_target
        state = resolve_target(text[len("testbed:"):])
        return SshTarget("127.0.0.1", port=state["port"], user="root", identity=state["identity"],
                         known_hosts=state["known_hosts"])
    if not text.startswith("ssh://"):
        config = ssh_config()
        if text in config_aliases(config):
            return SshTarget(text, identity=identity, known_hosts=known_hosts, name=text, config=config)
        raise UserError(f"unknown target {spec!r}: {FORMS}")
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise UserError(f"target {spec!r}: malformed port") from None
    if parts.password is not None:
        raise UserError(f"target {spec!r}: passwords are not accepted, use key authentication")
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UserError(f"malformed target {spec!r}: use ssh://user@host[:port]")
    if parts.hostname in ("127.0.0.1", "localhost") and port and identity is None and known_hosts is None:
        from measure.testbed import credentials
        found = credentials(port)       # the URL `invoke testbed up` printed: its key and host key
        if found:
            identity, known_hosts = found
    # user and port not in the URL come from the ssh_config's Host block, as with ssh
    return SshTarget(parts.hostname, port=port, user=parts.username, identity=identity,
                     known_hosts=known_hosts)
