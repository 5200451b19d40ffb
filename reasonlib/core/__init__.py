"""The core: the tokenizer, the problems (tasks), the model and its two fast paths (packed
training step, KV-cache engine), sampling, the answer validator, metrics and statistics.
Imports nothing from the layers above (train, study, report); docs/layout.md."""
