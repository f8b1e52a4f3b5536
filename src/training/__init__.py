"""Policy and reward-model training on the build stage's records (SPEC 9)."""
