"""Model assets: the official folder layout (one table), downloads, and the up-front checks of
weight files against the models they feed (key lists and shapes read from headers only)."""
