"""What agents decide: transaction intents, and what they know of their own pending transactions.

Agents never sign, send or read the chain. In each step an agent yields intents; the model's
wallet layer (:mod:`sim.wallet`) turns each into a signed transaction (nonce, fee cap, balance
check), submits it to the mempool and sends back a :class:`Pending` (accepted) or ``None``
(refused: the wallet could not afford its worst-case gas, or the mempool refused it)::

    def decide(self, view):
        pending = yield Send(Trade(0, market, size, limit), tip_wei, "arb:0")
        if pending is None:
            ...

Actions name the contract call and carry their arguments in the contracts' units
(``sim.units``): collateral ``_units`` (1e6), ``size_base`` (1e18), prices ``_e8``.
"""

from __future__ import annotations

from dataclasses import dataclass

# ------------------------------------------------------------------- actions


@dataclass(frozen=True)
class OpenSubaccount:
    """``MarginExchange.openSubaccount``: ``mode`` "cross" or "isolated" (its one market)."""

    subaccount: int
    mode: str
    market: int


@dataclass(frozen=True)
class Deposit:
    """``MarginExchange.deposit`` of ``amount_units`` collateral into a subaccount."""

    subaccount: int
    amount_units: int


@dataclass(frozen=True)
class Trade:
    """``MarginExchange.trade``: signed ``size_base``, worst average price ``limit_price_e8``."""

    subaccount: int
    market: int
    size_base: int
    limit_price_e8: int


@dataclass(frozen=True)
class Liquidate:
    """``MarginExchange.liquidate`` of ``(owner, subaccount)`` holding ``n_markets`` positions
    (the wallet sizes the gas limit by it)."""

    owner: str
    subaccount: int
    n_markets: int = 1


@dataclass(frozen=True)
class Takeover:
    """``MarginExchange.takeover``: take ``(owner, subaccount)``'s positions (or their liquidation
    slices) over into our CROSS subaccount ``liquidator_subaccount`` at the margin price."""

    owner: str
    subaccount: int
    liquidator_subaccount: int = 0
    n_markets: int = 1


@dataclass(frozen=True)
class BackstopLiquidate:
    """``MarginExchange.backstopLiquidate``: hand ``(owner, subaccount)``'s positions and margin
    to the protocol's backstop vault at the margin price."""

    owner: str
    subaccount: int
    n_markets: int = 1


@dataclass(frozen=True)
class Deleverage:
    """``MarginExchange.deleverage``: close a bankrupt account against opposite positions at its
    bankruptcy price (auto-deleveraging). ``n_holders``: accounts it may have to rank (sizes the
    gas limit)."""

    owner: str
    subaccount: int
    n_markets: int = 1
    n_holders: int = 0


@dataclass(frozen=True)
class ReportPrice:
    """``OracleFeed.report`` of ``price_e8`` on a market's feed."""

    market: int
    price_e8: int


Action = (
    OpenSubaccount
    | Deposit
    | Trade
    | Liquidate
    | Takeover
    | BackstopLiquidate
    | Deleverage
    | ReportPrice
)


# ------------------------------------------------------------------- intents


@dataclass(frozen=True)
class Send:
    """Send ``action`` as a new transaction bidding ``priority_fee_wei``; ``expiry_blocks``: it may
    wait at most that many blocks in the mempool."""

    action: Action
    priority_fee_wei: int
    label: str
    expiry_blocks: int | None = None


@dataclass(frozen=True)
class Replace:
    """Replace one of our pending transactions (same nonce) by ``action`` (None: the same call)
    at a priority fee of at least ``priority_fee_wei``; the wallet raises both fees by at least
    the mempool's replacement bump."""

    tx_id: str
    priority_fee_wei: int
    action: Action | None = None


@dataclass(frozen=True)
class Hedge:
    """A trade on the external market offsetting an on-chain trade of ours: ``size_base`` bought
    (+) on the venue for ``quote_units``. The model decides how much of it moves the external
    price (:mod:`sim.model.venue_flow`)."""

    market: int
    size_base: int
    quote_units: int


@dataclass(frozen=True)
class ExternalTrade:
    """A trade on the external market: ``notional_usd_signed`` (buy > 0) of ``market``, of which
    ``forced_usd`` (same sign) is forced flow (a liquidator selling what it took over). The model
    applies it to the external price (``ExternalMarket.apply_trade``)."""

    market: int
    notional_usd_signed: float
    forced_usd: float = 0.0


Intent = Send | Replace


@dataclass(frozen=True)
class Pending:
    """One of our transactions in the mempool, as the wallet reports it to its agent."""

    tx_id: str  # "0x..." transaction hash
    label: str
    action: Action
    priority_fee_wei: int
    max_fee_wei: int
    submitted_step: int  # the model step (block index) it was sent in
    min_replacement_priority_fee_wei: int  # the lowest priority fee a replacement may bid
