"""rtstyle: real-time video style transfer with AdaIN.

Stages, one module each: ``model`` (the network), ``weights`` (loading the encoder/decoder
pair), ``adain`` (the style step), ``styles`` and ``images`` (style codes and image I/O),
``color`` (colour preservation), ``stylizer`` (engines + style), ``video`` (PyAV source and
sink), ``convert`` (file conversion), ``cli``.
"""
__version__ = "0.1.0"


class UserError(Exception):
    """Bad input, output or environment: the message names the file and the problem and is
    shown to the user as is (exit status 1). Defined here so the CLI can catch it without
    importing the media stack."""
