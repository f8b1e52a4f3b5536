"""Self-play rollouts: lock-step play of a policy in a game, the rollout file format, and the
importer of the original release's rollouts."""
