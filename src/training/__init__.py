"""Policy and reward-model training on the build stage's records (docs/method.md §9)."""
