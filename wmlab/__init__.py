"""wmlab: a laboratory for model-based reinforcement learning and world models."""

from importlib.metadata import PackageNotFoundError, version

#: Major.minor version of the plugin contract (:mod:`wmlab.api`). A plugin declares the
#: version it was built for in ``api_version``; the registry refuses another major version.
API_VERSION = "1.6"

try:
    __version__ = version("wmlab")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
