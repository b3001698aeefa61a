"""Deploy a whole margin system (token, oracle feeds, venues, exchange, markets) on a chain session.

Everything is driven by one :class:`SystemConfig`. Every transaction carries an explicit gas
limit (never estimated); set-up transactions are mined in blocks through the session, so the
genesis timestamp and block times stay deterministic.

Units: prices ``_e8`` (8 decimals), collateral ``_units`` (6 decimals), base sizes 18 decimals,
fractions ``_ppm`` (parts per million).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from eth_abi import encode as abi_encode
from web3.contract import Contract

from sim.chain.abi_codec import FunctionCodec
from sim.chain.artifacts import all_abi_entries, load_artifact
from sim.chain.backend import MinedTx
from sim.chain.records import ErrorDecoder
from sim.chain.session import ChainSession
from sim.units import PPM, PRICE_SCALE, USD

# IMarginExchange.PriceSource: the oracle; the robust mark (median of the index, the venue and the
# index plus the EMA of the basis); the venue's raw price
MARGIN_PRICE_SOURCES = {"index": 0, "mark": 1, "venue": 2}
#: Half-life of the mark price's basis EMA: Hyperliquid's mark price weights its EMA samples by
#: exp(-t / 150 s) (docs, "Robust price indices"), a half-life of 150 s x ln 2 = 104 s.
MARK_HALF_LIFE_S = 104


@dataclass(frozen=True)
class GasLimits:
    """Explicit gas limits per call kind (never estimated). Generous upper bounds."""

    deploy: int = 8_000_000  # the exchange: 200 gas per byte of its ~24 KB code plus set-up
    admin: int = 400_000
    mint: int = 100_000
    approve: int = 80_000
    open_subaccount: int = 120_000
    deposit: int = 150_000
    withdraw: int = 250_000
    transfer: int = 250_000
    trade: int = 400_000
    report: int = 120_000
    liquidate_base: int = 250_000
    liquidate_per_market: int = 150_000
    backstop_base: int = 300_000
    backstop_per_market: int = 200_000
    takeover_base: int = 350_000
    takeover_per_market: int = 200_000
    # auto-deleveraging reads every holder of the account's markets: the base covers
    # deleverage_holders_in_base of them even if each is a counterparty filled (about 14,000 gas
    # per holder read, 21,000 per opposite position in profit, 30,000 per fill, plus refunds
    # returned only at the end); each holder beyond adds deleverage_per_holder
    deleverage_base: int = 6_000_000
    deleverage_per_market: int = 100_000
    deleverage_holders_in_base: int = 150
    deleverage_per_holder: int = 50_000

    def liquidate(self, n_markets: int) -> int:
        """Gas limit for liquidating an account holding ``n_markets`` positions."""
        return self.liquidate_base + self.liquidate_per_market * max(1, n_markets)

    def backstop(self, n_markets: int) -> int:
        """Gas limit for a backstop takeover of an account holding ``n_markets`` positions."""
        return self.backstop_base + self.backstop_per_market * max(1, n_markets)

    def takeover(self, n_markets: int) -> int:
        """Gas limit for taking over an account holding ``n_markets`` positions (the liquidator's
        own positions are valued too: the per-market part covers both)."""
        return self.takeover_base + self.takeover_per_market * max(1, n_markets)

    def deleverage(self, n_markets: int, n_holders: int = 0) -> int:
        """Gas limit for auto-deleveraging an account holding ``n_markets`` positions, whose
        markets have ``n_holders`` holders in all (``System.holder_count``; 0: not counted)."""
        extra = max(0, n_holders - self.deleverage_holders_in_base)
        return (
            self.deleverage_base
            + self.deleverage_per_market * max(1, n_markets)
            + self.deleverage_per_holder * extra
        )


@dataclass(frozen=True)
class MarketSpec:
    """One perpetual market: oracle, venue depth and risk parameters."""

    name: str
    initial_price_e8: int
    initial_margin_ppm: int = 50_000
    maintenance_margin_ppm: int = 30_000
    liquidation_penalty_ppm: int = 15_000
    liquidator_share_ppm: int = 500_000
    venue_depth_units: int = 50_000_000 * USD  # virtual quote reserve of the AMM
    max_oracle_age_s: int = 0
    margin_price: str = "index"
    funding_period_s: int = 0
    funding_cap_ppm: int = 0
    # partial liquidation: a position whose notional at the margin price is above
    # full_close_notional_units loses ceil(|size| * factor) per liquidation (0 = full close)
    partial_close_factor_ppm: int = 0
    full_close_notional_units: int = 0
    # margin_price "mark": half-life of the EMA of the venue / index basis (s)
    mark_half_life_s: int = MARK_HALF_LIFE_S

    def __post_init__(self) -> None:
        where = f"market {self.name!r}"
        if self.initial_price_e8 <= 0:
            raise ValueError(f"{where}: initial_price_e8 must be > 0")
        if not 0 < self.maintenance_margin_ppm < self.initial_margin_ppm <= PPM:
            raise ValueError(f"{where}: need 0 < maintenance < initial <= 1e6 ppm")
        if (
            not 0 <= self.liquidation_penalty_ppm <= PPM
            or not 0 <= self.liquidator_share_ppm <= PPM
        ):
            raise ValueError(f"{where}: penalty and liquidator share must be in [0, 1e6] ppm")
        if self.margin_price not in MARGIN_PRICE_SOURCES:
            raise ValueError(f"{where}: margin_price must be 'index', 'mark' or 'venue'")
        if not 0 <= self.mark_half_life_s < 2**32 or (
            self.margin_price == "mark" and self.mark_half_life_s == 0
        ):
            raise ValueError(f"{where}: mark_half_life_s must be in [1, 2**32) for the mark price")
        if self.venue_depth_units <= 0:
            raise ValueError(f"{where}: venue_depth_units must be > 0")
        if not 0 <= self.partial_close_factor_ppm <= PPM:
            raise ValueError(f"{where}: partial_close_factor_ppm must be in [0, 1e6] ppm")
        if not 0 <= self.full_close_notional_units < 2**64:
            raise ValueError(f"{where}: full_close_notional_units must be in [0, 2**64)")

    @property
    def venue_base_reserve(self) -> int:
        """Base reserve that puts the AMM's price at the initial price: base = quote * 1e20 / p."""
        return self.venue_depth_units * 10**20 // self.initial_price_e8

    def params_tuple(self) -> tuple[int, ...]:
        """The ``MarketParams`` struct as the contract expects it."""
        return (
            self.initial_margin_ppm,
            self.maintenance_margin_ppm,
            self.liquidation_penalty_ppm,
            self.liquidator_share_ppm,
            self.max_oracle_age_s,
            MARGIN_PRICE_SOURCES[self.margin_price],
            self.funding_period_s,
            self.funding_cap_ppm,
            self.partial_close_factor_ppm,
            self.full_close_notional_units,
            self.mark_half_life_s,
        )


def fixture_markets() -> tuple[MarketSpec, ...]:
    """The fixed markets of a system deployed without a scenario (the pytest fixtures, the demo,
    the block-market benchmark): an ETH-like and a BTC-like market with dYdX v3-like 5% / 3%
    margins at round prices, chosen so contract tests can be checked by hand. Simulation runs
    never use them: their markets come from the scenario (:mod:`sim.exchange.from_scenario`)."""
    return (
        MarketSpec(name="ETH", initial_price_e8=2_000 * PRICE_SCALE),
        MarketSpec(
            name="BTC", initial_price_e8=60_000 * PRICE_SCALE, venue_depth_units=100_000_000 * USD
        ),
    )


@dataclass(frozen=True)
class SystemConfig:
    """Everything needed to deploy one system."""

    markets: tuple[MarketSpec, ...] = field(default_factory=fixture_markets)
    insurance_fund_units: int = 1_000_000 * USD
    counterparty_fund_units: int = 100_000_000 * USD
    deployer_index: int = 0  # index into the session's dev accounts
    reporter_index: int = 1
    gas: GasLimits = field(default_factory=GasLimits)
    # the liquidation waterfall's exchange-wide switches (both off by default): backstop takeover
    # below this fraction of maintenance (Hyperliquid: 2/3) and auto-deleveraging
    backstop_threshold_ppm: int = 0
    adl_enabled: bool = False

    def __post_init__(self) -> None:
        if not self.markets:
            raise ValueError("SystemConfig.markets: at least one market is required")
        names = [m.name for m in self.markets]
        if len(set(names)) != len(names):
            raise ValueError(f"SystemConfig.markets: duplicate market names {names}")
        if self.insurance_fund_units < 0 or self.counterparty_fund_units < 0:
            raise ValueError("SystemConfig: fund sizes must be >= 0")
        if not 0 <= self.backstop_threshold_ppm <= PPM:
            raise ValueError("SystemConfig.backstop_threshold_ppm must be in [0, 1e6] ppm")

    @property
    def risk_config(self) -> tuple[int, bool]:
        """The ``RiskConfig`` struct as the contract expects it."""
        return (self.backstop_threshold_ppm, self.adl_enabled)


class TxFailed(RuntimeError):
    """A set-up or helper transaction reverted; ``reason`` is the decoded custom error."""

    def __init__(self, label: str, reason: str, mined: MinedTx):
        super().__init__(f"{label} reverted: {reason}")
        self.label = label
        self.reason = reason
        self.mined = mined


@dataclass(frozen=True)
class Call:
    """A contract call to sign: who sends it, where to, the calldata and its gas limit."""

    sender: str
    to: str
    data: bytes
    gas: int
    label: str = ""


@dataclass
class System:
    """Handles to a deployed system on a :class:`ChainSession`."""

    session: ChainSession
    config: SystemConfig
    deployer: str
    reporter: str
    token: Contract
    exchange: Contract
    feeds: list[Contract]
    venues: list[Contract]

    @property
    def market_names(self) -> list[str]:
        """Market names in market-id order."""
        return [m.name for m in self.config.markets]

    def call_data(self, contract: Contract, fn: str, *args: Any) -> bytes:
        """ABI-encode ``fn(*args)`` on ``contract`` (eth_abi directly; web3 normalizes what
        eth_abi refuses as is)."""
        try:
            return _codec(contract, fn).encode(args)
        except Exception:
            return bytes.fromhex(contract.encode_abi(fn, args=list(args))[2:])

    def call(
        self, sender: str, contract: Contract, fn: str, *args: Any, gas: int, label: str = ""
    ) -> Call:
        """A :class:`Call` of ``fn(*args)`` with an explicit gas limit."""
        return Call(sender, contract.address, self.call_data(contract, fn, *args), gas, label or fn)

    def send(self, call: Call) -> MinedTx:
        """Mine ``call`` alone in the next block; raise :class:`TxFailed` if it reverts."""
        return self.send_batch([call])[0]

    def try_send(self, call: Call) -> MinedTx:
        """Mine ``call`` alone in the next block and return its receipt, reverted or not."""
        return self.session.transact(
            call.sender, call.to, call.data, call.gas, require_success=False
        )

    def send_batch(self, calls: Sequence[Call], check: bool = True) -> list[MinedTx]:
        """Mine ``calls`` in order, packing as many per block as the gas limit allows."""
        mined: list[MinedTx] = []
        limit = (
            self.session.backend.head().gas_limit
            if hasattr(self.session.backend.head(), "gas_limit")
            else 30_000_000
        )
        block: list[Call] = []
        used = 0
        for c in calls:
            if block and used + c.gas > limit:
                mined.extend(self._mine(block))
                block, used = [], 0
            block.append(c)
            used += c.gas
        if block:
            mined.extend(self._mine(block))
        if check:
            for c, m in zip(calls, mined, strict=True):
                if m.status != 1:
                    raise TxFailed(c.label, revert_name(m.revert_data), m)
        return mined

    def _mine(self, calls: Sequence[Call]) -> list[MinedTx]:
        base_fee = self.session.chain_base_fee_wei()
        signed = [
            self.session.sign(
                c.sender,
                c.to,
                c.data,
                c.gas,
                max_fee_per_gas_wei=2 * base_fee + 1,
                max_priority_fee_per_gas_wei=0,
            )
            for c in calls
        ]
        return list(self.session.mine(signed).txs)

    # ------------------------------------------------------------ convenience

    def fund_trader_calls(self, trader: str, units: int) -> list[Call]:
        """Mint ``units`` collateral to ``trader`` and approve the exchange for all of it."""
        g = self.config.gas
        return [
            self.call(self.deployer, self.token, "mint", trader, units, gas=g.mint),
            self.call(
                trader, self.token, "approve", self.exchange.address, 2**256 - 1, gas=g.approve
            ),
        ]

    def open_subaccount_call(self, owner: str, subaccount: int, mode: str, market: int) -> Call:
        """Open a subaccount: ``mode`` "cross" or "isolated" (then ``market`` is its market)."""
        mode_id = {"cross": 1, "isolated": 2}[mode]
        return self.call(
            owner,
            self.exchange,
            "openSubaccount",
            subaccount,
            mode_id,
            market,
            gas=self.config.gas.open_subaccount,
        )

    def deposit_call(self, owner: str, subaccount: int, amount_units: int) -> Call:
        """Deposit ``amount_units`` collateral into ``(owner, subaccount)``."""
        return self.call(
            owner, self.exchange, "deposit", subaccount, amount_units, gas=self.config.gas.deposit
        )

    def open_account_calls(
        self, owner: str, subaccount: int, mode: str, market: int, deposit_units: int
    ) -> list[Call]:
        """Open a subaccount (``mode`` "cross" or "isolated") and deposit into it."""
        calls = [self.open_subaccount_call(owner, subaccount, mode, market)]
        if deposit_units > 0:
            calls.append(self.deposit_call(owner, subaccount, deposit_units))
        return calls

    def trade_call(
        self,
        owner: str,
        subaccount: int,
        market: int,
        size_base: int,
        limit_price_e8: int | None = None,
    ) -> Call:
        """Trade ``size_base`` (18 decimals, signed); no limit means any price."""
        if limit_price_e8 is None:
            limit_price_e8 = 2**255 if size_base > 0 else 0
        return self.call(
            owner,
            self.exchange,
            "trade",
            subaccount,
            market,
            size_base,
            limit_price_e8,
            gas=self.config.gas.trade,
        )

    def report_call(self, market: int, price_e8: int) -> Call:
        """The reporter writes ``price_e8`` to the market's feed."""
        return self.call(
            self.reporter, self.feeds[market], "report", price_e8, gas=self.config.gas.report
        )

    def liquidate_call(
        self, liquidator: str, owner: str, subaccount: int, n_markets: int = 1
    ) -> Call:
        """Liquidate ``(owner, subaccount)``."""
        return self.call(
            liquidator,
            self.exchange,
            "liquidate",
            owner,
            subaccount,
            gas=self.config.gas.liquidate(n_markets),
        )

    def takeover_call(
        self,
        liquidator: str,
        owner: str,
        subaccount: int,
        liquidator_subaccount: int = 0,
        n_markets: int = 1,
    ) -> Call:
        """Take ``(owner, subaccount)``'s positions over into the liquidator's CROSS subaccount at
        the margin price (``takeover``)."""
        return self.call(
            liquidator,
            self.exchange,
            "takeover",
            owner,
            subaccount,
            liquidator_subaccount,
            gas=self.config.gas.takeover(n_markets),
        )

    def backstop_call(self, caller: str, owner: str, subaccount: int, n_markets: int = 1) -> Call:
        """Hand ``(owner, subaccount)`` to the backstop vault (``backstopLiquidate``)."""
        return self.call(
            caller,
            self.exchange,
            "backstopLiquidate",
            owner,
            subaccount,
            gas=self.config.gas.backstop(n_markets),
        )

    def deleverage_call(
        self, caller: str, owner: str, subaccount: int, n_markets: int = 1, n_holders: int = 0
    ) -> Call:
        """Auto-deleverage ``(owner, subaccount)`` (``deleverage``). ``n_holders``, the holders of
        its markets (``holder_count``), raises the gas limit for books of more than a hundred or
        so accounts."""
        return self.call(
            caller,
            self.exchange,
            "deleverage",
            owner,
            subaccount,
            gas=self.config.gas.deleverage(n_markets, n_holders),
        )

    def holder_count(self, markets: Sequence[int]) -> int:
        """Accounts that ever held a position in ``markets`` (summed): what ``deleverage`` reads."""
        return sum(self.exchange.functions.holderCount(m).call() for m in markets)

    def risk_config_call(self, backstop_threshold_ppm: int, adl_enabled: bool) -> Call:
        """The owner sets the waterfall's exchange-wide switches (``setRiskConfig``)."""
        return self.call(
            self.deployer,
            self.exchange,
            "setRiskConfig",
            (backstop_threshold_ppm, adl_enabled),
            gas=self.config.gas.admin,
        )

    def healths(self, owners: Sequence[str], subaccounts: Sequence[int]) -> list[tuple]:
        """``healthOf``: one batch read of many accounts' health tuples (equity, initial and
        maintenance requirements, notional, liquidatable)."""
        codec = _codec(self.exchange, "healthOf")
        data = codec.encode((list(owners), list(subaccounts)))
        return list(codec.decode(self.session.call(self.exchange.address, data))[0])

    def health(self, owner: str, subaccount: int) -> dict[str, Any]:
        """``accountHealth`` as a dict (equity, requirements, notional, liquidatable)."""
        h = self.exchange.functions.accountHealth(owner, subaccount).call()
        return dict(
            zip(
                (
                    "equity",
                    "initial_requirement",
                    "maintenance_requirement",
                    "notional",
                    "liquidatable",
                ),
                h,
                strict=True,
            )
        )


@cache
def error_decoder() -> ErrorDecoder:
    """Decoder of every liqsim contract's custom errors (plus Error(string) and Panic)."""
    return ErrorDecoder(all_abi_entries("error"))


def revert_name(revert_data: bytes) -> str:
    """The custom error's name for ``revert_data`` ('' when there is none)."""
    return error_decoder().decode(revert_data).name


def _contract(session: ChainSession, name: str, address: str) -> Contract:
    return session.w3.eth.contract(address=address, abi=list(load_artifact(name).abi))


def _deploy(session: ChainSession, sender: str, name: str, *args: Any, gas: int) -> Contract:
    art = load_artifact(name)
    ctor = next((e for e in art.abi if e["type"] == "constructor"), {"inputs": []})
    data = art.bytecode + abi_encode([p["type"] for p in ctor["inputs"]], list(args))
    return _contract(session, name, session.deploy(sender, data, gas))


# (id of a contract's ABI list, function) -> (that list, kept alive so its id stays its own; codec)
_CODECS: dict[tuple[int, str], tuple[Any, FunctionCodec]] = {}


def _codec(contract: Contract, fn: str) -> FunctionCodec:
    """The eth_abi codec of ``contract.fn`` (built once per ABI and function)."""
    key = (id(contract.abi), fn)
    cached = _CODECS.get(key)
    if cached is None:
        cached = _CODECS[key] = (contract.abi, FunctionCodec.of(contract.abi, fn))
    return cached[1]


def deploy_system(
    session: ChainSession,
    config: SystemConfig | None = None,
    exchange_artifact: str = "MarginExchange",
) -> System:
    """Deploy token, exchange, one oracle feed and one virtual AMM per market, list the markets,
    authorize the reporter, write each market's initial price, set the waterfall's switches (only
    when one is on) and seed the insurance and counterparty funds. Returns handles to everything.
    ``exchange_artifact`` names the exchange contract to deploy (a test harness derived from
    ``MarginExchange``)."""
    config = config or SystemConfig()
    g = config.gas
    deployer = session.accounts[config.deployer_index].address
    reporter = session.accounts[config.reporter_index].address
    token = _deploy(session, deployer, "CollateralToken", "Liq USD", "lUSD", deployer, gas=g.deploy)
    exchange = _deploy(session, deployer, exchange_artifact, token.address, deployer, gas=g.deploy)
    feeds, venues = [], []
    for m in config.markets:
        feeds.append(
            _deploy(session, deployer, "OracleFeed", f"{m.name} / USD", deployer, gas=g.deploy)
        )
        venues.append(
            _deploy(
                session,
                deployer,
                "VirtualAmm",
                exchange.address,
                m.venue_base_reserve,
                m.venue_depth_units,
                gas=g.deploy,
            )
        )
    system = System(session, config, deployer, reporter, token, exchange, feeds, venues)
    calls: list[Call] = []
    for i, m in enumerate(config.markets):
        calls.append(system.call(deployer, feeds[i], "setReporter", reporter, True, gas=g.admin))
        calls.append(system.report_call(i, m.initial_price_e8))
        calls.append(
            system.call(
                deployer,
                exchange,
                "addMarket",
                feeds[i].address,
                venues[i].address,
                m.params_tuple(),
                gas=g.admin,
            )
        )
    if config.backstop_threshold_ppm or config.adl_enabled:
        calls.append(system.risk_config_call(*config.risk_config))
    funds = config.insurance_fund_units + config.counterparty_fund_units
    if funds:
        calls += system.fund_trader_calls(deployer, funds)
    if config.insurance_fund_units:
        calls.append(
            system.call(
                deployer, exchange, "depositInsurance", config.insurance_fund_units, gas=g.deposit
            )
        )
    if config.counterparty_fund_units:
        calls.append(
            system.call(
                deployer,
                exchange,
                "fundCounterparty",
                config.counterparty_fund_units,
                gas=g.deposit,
            )
        )
    system.send_batch(calls)
    return system
