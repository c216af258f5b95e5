"""The score stage: one ``score_<name>`` column per scorer, per shard."""
