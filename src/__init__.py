"""aria-dvc library: games, policy, rollouts, intention clustering, reward aggregation, training."""
