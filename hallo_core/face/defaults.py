"""The framing defaults the hosts offer (pure Python: the CLI reads them to print ``--help``)."""

DEFAULT_MARGIN = 0.75  # the crop grows the face box by this share of its long side on every side
DEFAULT_MAX_SIDE = 1920  # long side of a pasted-back video
DEFAULT_FEATHER = 0.08  # width of the paste-back blend band, as a fraction of the crop side
DETECTORS = ("auto", "scrfd", "mediapipe")  # the face finders: auto = SCRFD when its file is there
# What the user asks for, in every host (the CLI's --frame, the face node's mode); the module
# docstring of hallo_core.pipeline.full_frame says what each means and what it resolves to.
FRAME_MODES = ("auto", "crop", "stretch")
