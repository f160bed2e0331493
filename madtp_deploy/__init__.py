"""madtp-deploy: MADTP token-pruned CLIP models, exported and served fast."""

from .api import load
from .errors import MadtpError
from .models.clip import Encoded, MadtpCLIP

__all__ = ["Encoded", "MadtpCLIP", "MadtpError", "load"]
__version__ = "0.1.0"
