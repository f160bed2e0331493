"""CLIP with MADTP, and the loaders that build it from checkpoints."""

from .clip import Encoded, MadtpCLIP

__all__ = ["Encoded", "MadtpCLIP"]
