"""The reference paper bot: a socket client of the live runner that trades its signals on paper.

Held to live/'s rule: no vectorbt, optuna, jupyter or plotting is imported here.
"""
