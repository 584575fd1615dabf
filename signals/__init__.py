"""signals: turn closed candles into BUY/SELL signals, research them honestly, stream them live."""

__version__ = "0.1.0"
