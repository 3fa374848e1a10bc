"""Other ecosystems' entry points into activethief: `activethief.integrations.art` makes ART (the Adversarial
Robustness Toolbox) classifiers stealable targets and runs ActiveThief as an ART extraction attack.

Each integration is imported on its own (`from activethief.integrations.art import ...`), so that a missing
optional library only matters to whoever uses it.
"""
