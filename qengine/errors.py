"""Every exception qengine raises on purpose, in one tree.

```
QEngineError
  ConfigError            a configuration key has a bad value; names key, value, what is allowed
  SignatureError         a package failed verification; it was never unpickled
  PackageTooLarge        a package is over max_package_size
  BrokerError            a broker call failed
    BrokerUnavailable    the broker cannot be reached
  StoreError             the result store failed
  ScheduleError          a schedule is invalid
TaskTimeout (BaseException)  raised inside a task that overran its timeout
```
"""

from __future__ import annotations


class QEngineError(Exception):
    """Base of every error qengine raises on purpose."""


class ConfigError(QEngineError, ValueError):
    """A configuration value is invalid.

    Also a ``ValueError`` so code written for plain validation errors catches it.
    """


class SignatureError(QEngineError):
    """A package did not verify: bad signature, truncated, garbled or for another cluster."""


class PackageTooLarge(QEngineError, ValueError):
    """A package is larger than ``max_package_size`` allows."""


class BrokerError(QEngineError):
    """A broker operation failed."""


class BrokerUnavailable(BrokerError):
    """The broker could not be reached."""


class StoreError(QEngineError):
    """The result store could not be read or written."""


class ScheduleError(QEngineError, ValueError):
    """A schedule definition is invalid."""


class TaskTimeout(BaseException):
    """Raised inside a running task when it passes its timeout.

    It derives from ``BaseException`` on purpose: task code that catches
    ``Exception`` to log and carry on must not swallow its own time limit.
    """
