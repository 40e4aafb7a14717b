"""Media at the file boundary: the video reader and writer (RGB uint8 frames, one mp4 quality
default) and atomic output."""
