"""The liqsim Mesa model: one step is one block.

Each step: (1) the external market is at its price for this block (exogenous path plus the
decaying impact of agents' earlier external trades); (2) agents observe the chain as of the last
block (:class:`sim.exchange.view.ChainView`) and the external price as of their own latency, and submit
signed transactions to the mempool; (3) the block builder orders them by priority fee under the
gas limit left by background demand, applies the EIP-1559 base fee, and (4) the block executes on
the EVM; (5) receipts and decoded events go back to the agents, the view and the recorder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mesa
import numpy as np

from agents.arbitrageur import Arbitrageur
from agents.base import GWEI, ChainAgent
from agents.liquidator import Liquidator
from agents.oracle_reporter import OracleReporter
from agents.trader import Trader
from sim.chain.accounts import derive_accounts
from sim.chain.backend import GenesisConfig
from sim.chain.events import Event, EventDecoder
from sim.chain.session import ChainSession
from sim.exchange.book import AccountState, MarketRisk
from sim.exchange.client import (
    USD,
    Call,
    System,
    deploy_system,
    error_decoder,
)
from sim.exchange.from_scenario import system_config
from sim.exchange.view import ChainView, OracleState, VenueState
from sim.market.background import BackgroundDemand
from sim.market.builder import BlockBuilder, BlockResult
from sim.output.recorder import Recorder
from sim.scenario.population import draw_traders
from sim.scenario.pricepath import ExternalMarket
from sim.scenario.schema import Scenario

ETHER = 10**18
GAS_FREE_BLOCK_GAS_LIMIT = 2_000_000_000  # "unlimited" block space when gas friction is off
PPM = 10**6


@dataclass(frozen=True)
class Roles:
    """Indices of each role's dev account."""

    deployer: int
    reporter: int
    traders: range
    liquidators: range
    arbitrageurs: range

    @property
    def count(self) -> int:
        return self.arbitrageurs.stop


def _roles(s: Scenario) -> Roles:
    t0 = 2
    l0 = t0 + s.traders.count
    a0 = l0 + s.liquidators.count
    return Roles(0, 1, range(t0, l0), range(l0, a0), range(a0, a0 + s.arbitrageurs.count))


class LiqSimModel(mesa.Model):
    """One run of a scenario on a fresh local chain."""

    def __init__(self, scenario: Scenario, seed: int = 0):
        super().__init__(seed=seed)
        self.scenario = scenario
        self.seed = seed
        self.block = 0  # index of the block being built (0-based)
        self.gas_free = not scenario.run.gas_enabled
        # independent streams: the price path and the trader draws do not depend on the margin
        # mode or on agent behaviour (common random numbers across paired runs)
        path_seq, trader_seq, agent_seq = np.random.SeedSequence(seed).spawn(3)
        self.external = ExternalMarket.from_scenario(scenario, np.random.default_rng(path_seq))
        profiles = draw_traders(scenario, np.random.default_rng(trader_seq))
        agent_rng = np.random.default_rng(agent_seq)

        self.roles = _roles(scenario)
        self.session = self._make_session()
        prices0 = [self.external.price_e8(i, 0) for i in range(len(scenario.markets))]
        self.system: System = deploy_system(self.session, system_config(scenario, prices0))
        self.decoder = EventDecoder()
        self._set_up_wallets(profiles)
        self.view = self._initial_view()

        self.background = BackgroundDemand(self, enabled=not self.gas_free)
        self.builder = BlockBuilder(
            self.session,
            background=self.background,
            errors=error_decoder(),
            start_base_fee_wei=0
            if self.gas_free
            else int(scenario.chain.initial_base_fee_gwei * GWEI),
        )
        self.view.next_base_fee_wei = self.builder.base_fee_wei()
        self._make_agents(profiles, agent_rng)
        self.by_address: dict[str, ChainAgent] = {
            a.address: a for a in self.agents if isinstance(a, ChainAgent)
        }
        self.liquidatable: list[AccountState] = []
        # others' net base flow per venue not yet absorbed by arbitrage (agents.arbitrageur)
        self.venue_flow_base = [0] * len(scenario.markets)
        self.recorder = Recorder(self)

    # ------------------------------------------------------------------ set-up

    def _make_session(self) -> ChainSession:
        s, r = self.scenario, self.roles
        accounts = derive_accounts(self.seed, r.count)
        balances = [
            (accounts[r.deployer].address, 10**6 * ETHER),
            (accounts[r.reporter].address, 1_000 * ETHER),
        ]
        balances += [(accounts[i].address, ETHER) for i in r.traders]
        balances += [
            (accounts[i].address, int(s.liquidators.eth_budget * ETHER)) for i in r.liquidators
        ]
        balances += [(accounts[i].address, 1_000 * ETHER) for i in r.arbitrageurs]
        gas_limit = GAS_FREE_BLOCK_GAS_LIMIT if self.gas_free else s.chain.block_gas_limit
        base_fee = 0 if self.gas_free else int(s.chain.initial_base_fee_gwei * GWEI)
        genesis = GenesisConfig(
            block_gas_limit=gas_limit, base_fee_wei=base_fee, balances=tuple(balances)
        )
        return ChainSession(
            genesis, seed=self.seed, n_accounts=r.count, block_time_s=s.run.block_time_s
        )

    def _address(self, index: int) -> str:
        return self.session.accounts[index].address

    def _set_up_wallets(self, profiles) -> None:
        """Mint each trader its collateral and top-up wallet and approve the exchange; open and
        fund each arbitrageur's CROSS subaccount. Set-up blocks come before block 0."""
        system = self.system
        calls: list[Call] = []
        for i, p in zip(self.roles.traders, profiles, strict=True):
            calls += system.fund_trader_calls(self._address(i), p.collateral_units + p.wallet_units)
        arb_units = int(self.scenario.arbitrageurs.collateral_usd * USD)
        for i in self.roles.arbitrageurs:
            calls += system.fund_trader_calls(self._address(i), arb_units)
            calls += system.open_account_calls(
                self._address(i), Arbitrageur.subaccount, "cross", 0, arb_units
            )
        mined = system.send_batch(calls)
        self._setup_events = [ev for m in mined for ev in self.decoder.decode_all(m.logs)]

    def _initial_view(self) -> ChainView:
        system = self.system
        risk = [
            MarketRisk(
                m.initial_margin_ppm,
                m.maintenance_margin_ppm,
                m.liquidation_penalty_ppm,
                m.liquidator_share_ppm,
            )
            for m in system.config.markets
        ]
        oracles = []
        for feed in system.feeds:
            rid, answer, _, updated, _ = feed.functions.latestRoundData().call()
            oracles.append(OracleState(answer, updated, rid))
        venues = [
            VenueState(v.functions.baseReserve().call(), v.functions.quoteReserve().call())
            for v in system.venues
        ]
        view = ChainView(
            [f.address for f in system.feeds],
            [v.address for v in system.venues],
            system.exchange.address,
            risk,
            oracles,
            venues,
            use_mark_price=self.scenario.exchange.margin_price == "mark",
        )
        view.apply(self._setup_events)
        head = self.session.head()
        view.block_number, view.timestamp_s = head.number, head.timestamp
        return view

    def _make_agents(self, profiles, agent_rng: np.random.Generator) -> None:
        s = self.scenario
        OracleReporter(self, self._address(self.roles.reporter))
        override = s.run.margin_mode_override
        for i, p in zip(self.roles.traders, profiles, strict=True):
            Trader(self, self._address(i), p, p.mode if override == "none" else override)
        lq = s.liquidators
        for i in self.roles.liquidators:
            latency = int(agent_rng.integers(lq.latency_blocks_min, lq.latency_blocks_max + 1))
            Liquidator(self, self._address(i), latency)
        for k, i in enumerate(self.roles.arbitrageurs):
            Arbitrageur(self, self._address(i), offset=k)

    # ------------------------------------------------------------ agent services

    def next_base_fee_wei(self) -> int:
        return self.view.next_base_fee_wei

    def priority_fee(self, wanted_wei: int) -> int:
        return 0 if self.gas_free else wanted_wei

    def fee_cap_wei(self, priority_fee_wei: int) -> int:
        """A wallet's fee cap: twice the next base fee plus the priority fee."""
        return 2 * self.next_base_fee_wei() + priority_fee_wei

    def gas_token_price_usd(self) -> float:
        c = self.scenario.chain
        if c.gas_token_market:
            return self.external.price(c.gas_token_market, self.block)
        return c.gas_token_price_usd

    def gas_cost_usd(self, gas_used: int, priority_fee_wei: int) -> float:
        if self.gas_free:
            return 0.0
        return (
            gas_used
            * (self.next_base_fee_wei() + priority_fee_wei)
            / 1e18
            * self.gas_token_price_usd()
        )

    def rival_bid_wei(self, label: str, me: str) -> int | None:
        """Highest priority fee of another sender's pending transaction with ``label``."""
        bids = [
            p.signed.max_priority_fee_per_gas_wei
            for p in self.builder.mempool.pending()
            if p.intent.label == label and p.sender != me
        ]
        return max(bids) if bids else None

    def confirm_liquidatable(
        self, candidates: Sequence[AccountState]
    ) -> list[tuple[AccountState, int]]:
        """One ``healthOf`` call: the candidates the chain says are liquidatable, with equity."""
        owners = [a.owner for a in candidates]
        subs = [a.subaccount for a in candidates]
        healths = self.system.exchange.functions.healthOf(owners, subs).call()
        return [(a, h[0]) for a, h in zip(candidates, healths, strict=True) if h[4]]

    # --------------------------------------------------------------------- step

    def step(self) -> None:
        for agent in self.by_address.values():  # creation order: deterministic
            agent.reprice_stuck()
        self.agents.shuffle_do("step")
        result = self.builder.build_block()
        self._absorb(result)
        self.block += 1

    def _absorb(self, result: BlockResult) -> None:
        """Hand receipts and events to agents, the view and the recorder."""
        block_events: list[Event] = []
        for rec, mined in zip(result.records, result.block.txs, strict=True):
            events = self.decoder.decode_all(
                mined.logs, block=rec.block_number, tx_index=rec.index_in_block
            )
            self.recorder.before_tx(rec, events)
            self.view.apply(events)
            self._track_venue_flow(events)
            block_events += events
            agent = self.by_address.get(rec.sender)
            if agent is not None:
                agent.notify_included(rec, events)
        for dropped in result.dropped:
            agent = self.by_address.get(dropped.sender)
            if agent is not None:
                agent.notify_dropped(dropped)
        self.view.block_number = result.block.number
        self.view.timestamp_s = result.block.timestamp
        self.view.next_base_fee_wei = result.next_base_fee_wei
        self.liquidatable = self.view.book.mark_liquidatable(
            self.view.margin_prices_e8(), self.block
        )
        self.recorder.after_block(result, block_events)

    def _track_venue_flow(self, events: list[Event]) -> None:
        """Accumulate non-arbitrage trades and liquidation closes executed on the venues."""
        for ev in events:
            if ev.name == "Traded" and not isinstance(
                self.by_address.get(ev.args["owner"]), Arbitrageur
            ):
                self.venue_flow_base[ev.args["market"]] += ev.args["sizeDelta"]
            elif ev.name == "PositionLiquidated":
                self.venue_flow_base[ev.args["market"]] += ev.args["sizeClosed"]

    def run(self, blocks: int | None = None, progress=None) -> None:
        """Run ``blocks`` steps (the scenario's length by default)."""
        n = self.scenario.run.blocks if blocks is None else blocks
        for _ in range(n):
            self.step()
            if progress is not None:
                progress(self.block)
