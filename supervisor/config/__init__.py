"""Configuration: TOML -> frozen msgspec Structs, with errors that name file, line and key.

The schema lives in :mod:`supervisor.config.schema`, loading and key-by-key validation
in :mod:`supervisor.config.load`, TOML positions and syntax messages in
``supervisor.config._toml``. Import from here: ``from supervisor.config import Config``.
"""

from supervisor.config.load import config_from_dict as config_from_dict
from supervisor.config.load import load_config as load_config
from supervisor.config.load import loads_config as loads_config
from supervisor.config.schema import DEFAULT_CONNECT_ATTEMPTS as DEFAULT_CONNECT_ATTEMPTS
from supervisor.config.schema import DEFAULT_CONNECT_INTERVAL as DEFAULT_CONNECT_INTERVAL
from supervisor.config.schema import DEFAULT_MAX_RESTARTS as DEFAULT_MAX_RESTARTS
from supervisor.config.schema import DEFAULT_SHUTDOWN_TIMEOUT as DEFAULT_SHUTDOWN_TIMEOUT
from supervisor.config.schema import DEFAULT_WITHIN as DEFAULT_WITHIN
from supervisor.config.schema import Config as Config
from supervisor.config.schema import ConnectionConfig as ConnectionConfig
from supervisor.config.schema import RestSettings as RestSettings
from supervisor.config.schema import SupervisorSettings as SupervisorSettings

__all__ = [
    "DEFAULT_CONNECT_ATTEMPTS",
    "DEFAULT_CONNECT_INTERVAL",
    "DEFAULT_MAX_RESTARTS",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_WITHIN",
    "Config",
    "ConnectionConfig",
    "RestSettings",
    "SupervisorSettings",
    "config_from_dict",
    "load_config",
    "loads_config",
]
