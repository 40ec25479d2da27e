"""Errors a user can cause, each with a message that says what went wrong.

Every error raised for bad input derives from :class:`ICPortraitError`, so the CLI
can print one line and exit non-zero instead of showing a traceback.
"""


class ICPortraitError(Exception):
    """Base class of every error icportrait raises on purpose."""


class ImageError(ICPortraitError):
    """The file is not a usable image (unreadable, truncated, empty, too large...)."""


class FaceError(ICPortraitError):
    """The image is readable but its faces do not meet the request."""


class NoFaceError(FaceError):
    """No face was found."""


class MultipleFacesError(FaceError):
    """Several faces were found where exactly one was required."""


class FaceTooSmallError(FaceError):
    """The face is found but too small to be used."""


class FaceTurnedError(FaceError):
    """The face is turned too far from the camera to be used."""


class FaceCutOffError(FaceError):
    """The face is cut off by the image border."""


class FaceIndexError(FaceError):
    """The face asked for by its index is not in the photo."""


class MissingDependencyError(ICPortraitError):
    """An optional package or a bundled model file is not installed."""


class ModelFilesError(ICPortraitError):
    """A model folder or file is missing, incomplete or of the wrong kind."""


class SettingError(ICPortraitError, ValueError):
    """A setting is outside its range (a ValueError too, for callers of the pure functions)."""
