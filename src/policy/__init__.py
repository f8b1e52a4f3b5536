"""The policy model: chat encoding, the decode loop with its prefix cache, model loading."""
