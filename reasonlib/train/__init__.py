"""Training: curricula, the notebook parameters, config-keyed artifacts, the one loop
skeleton, SFT and RL. Imports from the core only; docs/layout.md."""
