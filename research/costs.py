"""Trading cost models: fees per side and slippage per fill, as fractions of the traded price."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

BPS = 1e-4


@dataclass(frozen=True, kw_only=True)
class CostModel:
    """Fees (per side, taker) and fixed slippage (per fill), both in basis points."""

    fee_bps: float = 5.5
    slippage_bps: float = 1.0

    def fee_fraction(self) -> float:
        """Return the fee charged per side as a fraction of notional."""
        return self.fee_bps * BPS

    def slippage_fraction(self, candles: pd.DataFrame) -> np.ndarray:
        """Return the slippage of a fill on each candle as a fraction of its price."""
        return np.full(len(candles), self.slippage_bps * BPS)

    def with_total_bps(self, total_bps: float) -> CostModel:
        """Return a copy whose fee + slippage per side add up to `total_bps` (same split)."""
        current = self.fee_bps + self.slippage_bps
        share = self.fee_bps / current if current > 0 else 1.0
        return CostModel(fee_bps=total_bps * share, slippage_bps=total_bps * (1.0 - share))
