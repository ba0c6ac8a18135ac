"""One exception tree. Permanent errors fail their job at once; transient ones may be retried."""


class FrameqError(Exception):
    """Base of every error frameq raises on purpose."""


class ConfigError(FrameqError):
    """A setting is missing or has a bad value."""


class InputError(FrameqError):
    """The input media cannot be processed: never retried, fails its own job only."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


class RecipeError(FrameqError):
    """A recipe is unknown or its stage graph is invalid."""


class LimitReached(FrameqError):
    """A tenant has as many jobs (or frames) under way as it may: it should try again later."""


class JobNotFound(FrameqError):
    """No job has the given id."""


class TransientError(FrameqError):
    """A passing failure (store timeout, connection reset): the task may run again."""


class Cancelled(FrameqError):
    """The job was cancelled while the task ran."""


class OutputError(FrameqError):
    """An output path cannot be written: refused before any work, not after a whole video."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class StoreRefused(ConfigError):
    """The object store refused a request for good (no such bucket, access denied): retrying
    cannot help, a setting or a permission has to change."""


class Unreachable(FrameqError):
    """A server frameq needs (the database, the broker) does not answer."""

    def __init__(self, what: str, setting: str, address: str, reason: str) -> None:
        super().__init__(f"cannot reach {what} at {address} ({setting}): {reason}")
        self.setting = setting
        self.address = address
        self.reason = reason
