"""Strategies: pure, vectorised signal functions with declared parameter spaces.

A new strategy is one new module in this folder that defines ``STRATEGY``, an instance of a
`strategies.base.Strategy` subclass. It is found by name, with no registration step.
"""

from __future__ import annotations

from strategies.base import BUY, SELL, Rule, RuleSet, SignalFrame, Strategy
from strategies.registry import get_strategy, params_id, strategy_hash, strategy_names

__all__ = [
    "BUY",
    "SELL",
    "Rule",
    "RuleSet",
    "SignalFrame",
    "Strategy",
    "get_strategy",
    "params_id",
    "strategy_hash",
    "strategy_names",
]
