"""The framing defaults the hosts offer (pure Python: the CLI reads them to print ``--help``)."""

DEFAULT_MARGIN = 0.75  # the crop grows the face box by this share of its long side on every side
DEFAULT_MAX_SIDE = 1920  # long side of a pasted-back video
DEFAULT_FEATHER = 0.08  # width of the paste-back blend band, as a fraction of the crop side
DETECTORS = ("auto", "scrfd", "mediapipe")  # the face finders: auto = SCRFD when its file is there
