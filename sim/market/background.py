"""Background demand: the rest of the chain's demand for block space (not ours to execute).

Not an agent (it decides nothing): each block it offers the builder a list of
:class:`BackgroundBid` (gas at a priority fee, optionally a fee cap) that compete with our
transactions for space (docs/block-market.md). Three parts, each switchable in ``[background]``:

* **Elastic** (``DemandProfile``, the scenario's crash-window schedule): gas at the calm fee
  that shrinks as the base fee rises (``fee_elasticity``). Its tips are spread over ``tiers``
  price levels (lognormal, ``tip_dispersion``) so a full block has a clearing tip that
  estimates can miss.
* **Urgent** (``UrgentDemandParams``): fee-inelastic demand driven by realised volatility of the
  external markets (the rest of the chain trades, arbitrages and liquidates too): at stress
  ``s`` in [0, 1] it wants ``s * urgent_utilization`` of the gas limit whatever the fee up to
  its fee caps (spread around ``urgent_max_fee_multiple`` x the reference base fee), and tips
  whose median moves from the calm to the crash tip as ``s`` rises (geometric).
  Stress is ``(r - 1) / (full_stress_volatility_ratio - 1)`` clipped to [0, 1], where ``r`` is
  the realised volatility (an exponentially weighted moving average of squared block log
  returns, half-life ``volatility_half_life_blocks``) over the calm volatility of the market.
* **Activity** (``activity_multiple``): the rest of the chain's liquidation and arbitrage bots
  do what ours did: each of our liquidation or arbitrage transactions in the last block comes
  back as ``activity_multiple`` times its gas at its tip. Liquidation rushes here crowd blocks.

**Queueing** (``queue_blocks``, 0 = off): by default every block's bids are fresh and what did
not get in vanishes. With ``queue_blocks = n > 0`` the urgent and activity gas the builder left
out of a block (it reports each bid's included gas to :meth:`BackgroundDemand.settle`) bids again
in the next block, at its own tip and fee cap, alongside that block's fresh bids, until it is
included or has waited ``n`` blocks. The elastic part stays fresh: it is price-sensitive demand
that re-decides each block.

Under the first-price fee market (``chain.fee_market = "first_price"``, pre-London) the base fee
is 0, so nothing prices the elastic part out: when demand exceeds the gas limit blocks stay full
and the tip (the gas price) decides who gets in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Protocol

from sim.market.feemarket import BackgroundBid


class DemandProfile(Protocol):
    """Elastic background gas demanded in a block: ``at(step, base_fee_wei) -> (gas,
    median priority_fee_wei)`` (``sim.scenario.pricepath.BackgroundProfile`` is the scenario's)."""

    def at(self, step: int, base_fee_wei: int) -> tuple[int, int]: ...


def tier_tips_wei(median_tip_wei: int, tiers: int, dispersion: float) -> list[int]:
    """``tiers`` tips spread lognormally around ``median_tip_wei`` (quantiles (k + 0.5) / tiers
    of a lognormal with sigma ``dispersion``), cheapest first."""
    if tiers <= 1 or dispersion <= 0:
        return [median_tip_wei] * max(tiers, 1)
    normal = NormalDist()
    return [
        round(median_tip_wei * math.exp(dispersion * normal.inv_cdf((k + 0.5) / tiers)))
        for k in range(tiers)
    ]


def spread_bid(
    gas: int,
    median_tip_wei: int,
    tiers: int,
    dispersion: float,
    median_max_fee_wei: int | None = None,
) -> list[BackgroundBid]:
    """``gas`` split evenly over tip tiers (the rounding remainder goes to the cheapest). With
    ``median_max_fee_wei`` each tier's fee cap is spread like its tip (who tips more accepts a
    higher base fee); without it the bids take any base fee."""
    if gas <= 0:
        return []
    tips = tier_tips_wei(median_tip_wei, tiers, dispersion)
    caps: list[int | None] = (
        [None] * len(tips)
        if median_max_fee_wei is None
        else list(tier_tips_wei(median_max_fee_wei, tiers, dispersion))
    )
    share = gas // len(tips)
    gases = [share] * len(tips)
    gases[0] += gas - share * len(tips)
    return [BackgroundBid(g, tip, cap) for g, tip, cap in zip(gases, tips, caps, strict=True) if g]


@dataclass(frozen=True)
class UrgentDemandParams:
    """Fee-inelastic demand that follows volatility (``[background]`` urgent keys)."""

    block_gas_limit: int
    urgent_utilization: float  # gas wanted at full stress, fraction of the gas limit
    full_stress_volatility_ratio: float  # realised / calm volatility at which stress is 1
    volatility_half_life_blocks: float
    calm_tip_wei: int
    crash_tip_wei: int
    median_max_fee_wei: int  # fee cap of the median urgent bidder (tiers spread around it)
    calm_block_volatility: tuple[float, ...]  # per market: sd of a block's log return in calm


class VolatilityStress:
    """Stress in [0, 1] from the realised volatility of the external markets (the largest
    ratio of realised to calm volatility over markets)."""

    def __init__(self, params: UrgentDemandParams):
        self.params = params
        self._decay = 0.5 ** (1.0 / params.volatility_half_life_blocks)
        self._variance = [v * v for v in params.calm_block_volatility]  # start at calm
        self._last: list[float] | None = None
        self.ratio = 1.0

    def observe(self, prices: Sequence[float]) -> float:
        """Take this block's external prices; returns the stress."""
        if self._last is not None:
            d = self._decay
            for i, (now, before) in enumerate(zip(prices, self._last, strict=True)):
                r = math.log(now / before)
                self._variance[i] = d * self._variance[i] + (1 - d) * r * r
        self._last = list(prices)
        self.ratio = (
            max(
                math.sqrt(var) / calm
                for var, calm in zip(self._variance, self.params.calm_block_volatility, strict=True)
                if calm > 0
            )
            if any(c > 0 for c in self.params.calm_block_volatility)
            else 1.0
        )
        return self.stress

    @property
    def stress(self) -> float:
        full = self.params.full_stress_volatility_ratio
        return min(1.0, max(0.0, (self.ratio - 1.0) / (full - 1.0)))


@dataclass(frozen=True)
class TierShape:
    """How background tips spread over price levels."""

    tiers: int = 1
    dispersion: float = 0.0


class BackgroundDemand:
    """Supplies the block builder with each block's background bids (see the module docstring).

    The model calls :meth:`observe` once per block before the block is built (external prices,
    our last block's liquidation and arbitrage transactions); the builder calls the object, and
    after selecting the block tells :meth:`settle` how much gas of each bid got in.
    """

    def __init__(
        self,
        profile: DemandProfile | None,
        *,
        shape: TierShape = TierShape(),
        urgent: UrgentDemandParams | None = None,
        activity_multiple: float = 0.0,
        queue_blocks: int = 0,
    ):
        if queue_blocks < 0:
            raise ValueError(f"queue_blocks must be >= 0, got {queue_blocks}")
        self.profile = profile
        self.shape = shape
        self.urgent = urgent
        self.stress_meter = None if urgent is None else VolatilityStress(urgent)
        self.activity_multiple = activity_multiple
        self._activity: tuple[tuple[int, int], ...] = ()
        self.queue_blocks = queue_blocks
        self.last_bids: tuple[BackgroundBid, ...] = ()
        # blocks each of ``last_bids`` has waited (None: elastic, never queued)
        self._ages: tuple[int | None, ...] = ()
        self.queued: tuple[tuple[BackgroundBid, int], ...] = ()  # (left-out bid, blocks waited)

    @property
    def stress(self) -> float:
        return 0.0 if self.stress_meter is None else self.stress_meter.stress

    def observe(self, prices: Sequence[float], activity: Sequence[tuple[int, int]] = ()) -> None:
        """This block's external prices and our last block's ``(tip_wei, gas_used)`` of
        liquidation and arbitrage transactions."""
        if self.stress_meter is not None:
            self.stress_meter.observe(prices)
        self._activity = tuple(activity)

    def _urgent_bids(self) -> list[BackgroundBid]:
        u, s = self.urgent, self.stress
        if u is None or s <= 0 or u.urgent_utilization <= 0:
            return []
        gas = int(s * u.urgent_utilization * u.block_gas_limit)
        median = u.calm_tip_wei * (u.crash_tip_wei / u.calm_tip_wei) ** s if u.calm_tip_wei else 0
        return spread_bid(
            gas, round(median), self.shape.tiers, self.shape.dispersion, u.median_max_fee_wei
        )

    def _activity_bids(self) -> list[BackgroundBid]:
        k = self.activity_multiple
        return [BackgroundBid(int(gas * k), tip) for tip, gas in self._activity if gas * k >= 1]

    def __call__(self, step: int, base_fee_wei: int) -> tuple[BackgroundBid, ...]:
        """This block's bids: queued ones first (they arrived earlier), then fresh elastic,
        urgent and activity bids."""
        bids: list[BackgroundBid] = [bid for bid, _ in self.queued]
        ages: list[int | None] = [age for _, age in self.queued]
        self.queued = ()  # offered now; settle() queues what is left out
        if self.profile is not None:
            gas, tip = self.profile.at(step, base_fee_wei)
            elastic = spread_bid(gas, tip, self.shape.tiers, self.shape.dispersion)
            inelastic = self._urgent_bids() + self._activity_bids()
            bids += elastic + inelastic
            ages += [None] * len(elastic) + [0] * len(inelastic)
        self.last_bids = tuple(bids)
        self._ages = tuple(ages)
        return self.last_bids

    def settle(self, included_gas: Sequence[int]) -> None:
        """The gas of each of :attr:`last_bids` that got into the block (same order). With
        ``queue_blocks > 0`` the urgent and activity gas left out bids again next block, until
        it has waited ``queue_blocks`` blocks; otherwise this does nothing."""
        if self.queue_blocks <= 0:
            return
        if len(included_gas) != len(self.last_bids):
            raise ValueError(
                f"settle needs one included gas per bid: {len(included_gas)} for "
                f"{len(self.last_bids)} bids"
            )
        queued: list[tuple[BackgroundBid, int]] = []
        for bid, age, got in zip(self.last_bids, self._ages, included_gas, strict=True):
            left = bid.gas - got
            if age is None or left <= 0 or age + 1 > self.queue_blocks:
                continue
            queued.append((BackgroundBid(left, bid.priority_fee_wei, bid.max_fee_wei), age + 1))
        self.queued = tuple(queued)
