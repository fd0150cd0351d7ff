"""waitroom: the shared package (settings, Redis keys and scripts, tokens, the draw, the clock)."""
