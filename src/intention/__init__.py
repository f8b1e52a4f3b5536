"""ARIA's intention space: embed utterances, cluster them, choose k, label the clusters, and
aggregate rewards within each intention (the records the policy is trained on)."""
