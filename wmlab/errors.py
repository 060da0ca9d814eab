"""User-facing errors: the CLI prints their message and exits non-zero, no traceback."""


class WmlabError(Exception):
    """A problem with the user's input or setup; the message says what is valid."""


class ConfigError(WmlabError):
    """An unknown key, a wrong type, a malformed override or a missing preset."""


class RegistryError(WmlabError):
    """An unknown or broken plugin, or one built for another API version."""


class EnvError(WmlabError):
    """An unknown env or task, or a missing renderer."""


class CheckpointError(WmlabError):
    """A checkpoint that is missing, unreadable or from another method."""


def check_choices(cfg, choices: dict, section: str = "method") -> None:
    """Raise :class:`ConfigError` naming the first setting of ``cfg`` whose value is not one
    of its choices: ``check_choices(cfg, {"agent": ("ppo", "random")})`` ->
    ``method.agent='x'; valid: ppo, random``."""
    for key, valid in choices.items():
        value = getattr(cfg, key)
        if value not in valid:
            raise ConfigError(f"{section}.{key}={value!r}; valid: {', '.join(map(str, valid))}")


def check_at_least(cfg, names, minimum: int = 1, section: str = "method") -> None:
    """Raise :class:`ConfigError` naming the first of the settings ``names`` of ``cfg`` below
    ``minimum``: ``check_at_least(cfg, ["batch_size"])`` -> ``method.batch_size=0 must be >= 1``."""
    for key in names:
        value = getattr(cfg, key)
        if value < minimum:
            raise ConfigError(f"{section}.{key}={value} must be >= {minimum}")
