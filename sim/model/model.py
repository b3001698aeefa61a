"""The liqsim Mesa model: one step is one block.

Each step: (1) the external market is at its price for this block (exogenous path plus the
decaying impact of agents' earlier external trades); (2) each agent, in a shuffled order, is
handed what it may know (:class:`sim.model.observation.AgentView`: the chain as of the last
block, the mempool, the external price at its latency) and returns intents, which its wallet
(:mod:`sim.wallet`) signs and submits to the mempool; (3) the block builder orders them by
priority fee under the gas limit left by background demand, applies the EIP-1559 base fee, and
(4) the block executes on the EVM; (5) receipts and decoded events go back to the wallets, the
agents, the view and the recorder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mesa
import numpy as np

from agents.arbitrageur import Arbitrageur
from agents.base import ChainAgent
from agents.intents import ExternalTrade
from agents.keeper import Keeper
from agents.liquidator import Liquidator
from agents.oracle_reporter import OracleReporter
from agents.trader import Trader
from sim.chain.accounts import derive_accounts
from sim.chain.backend import GenesisConfig
from sim.chain.events import Event, EventDecoder
from sim.chain.session import ChainSession
from sim.exchange.book import AccountState, MarketRisk
from sim.exchange.client import (
    MARGIN_PRICE_SOURCES,
    Call,
    System,
    deploy_system,
    error_decoder,
)
from sim.exchange.from_scenario import system_config
from sim.exchange.mark import MarkBasis
from sim.exchange.view import ChainView, OracleState, VenueState
from sim.market.builder import BlockBuilder, BlockResult
from sim.market.fee_history import BlockTips, FeeHistory, lowest_tips
from sim.model.agent_params import (
    arbitrageur_params,
    keeper_needed,
    keeper_params,
    liquidator_params,
    reporter_params,
    trader_params,
)
from sim.model.block_space import activity_of, background_demand
from sim.model.observation import AgentView, FeeEstimates, MempoolWindow
from sim.model.venue_flow import VenueFlow
from sim.output.contagion import spillover_closes
from sim.output.recorder import Recorder
from sim.scenario.impact import drawn_open_interest_usd
from sim.scenario.population import draw_traders
from sim.scenario.pricepath import ExternalMarket
from sim.scenario.schema import Scenario
from sim.units import ETHER, gwei_to_wei, usd_to_units
from sim.wallet import Wallet

GAS_FREE_BLOCK_GAS_LIMIT = 2_000_000_000  # "unlimited" block space when gas friction is off


@dataclass(frozen=True)
class Roles:
    """Indices of each role's dev account."""

    deployer: int
    reporter: int
    traders: range
    liquidators: range
    arbitrageurs: range
    keeper: int | None  # the protocol's keeper, when the waterfall has a step for it

    @property
    def count(self) -> int:
        return self.arbitrageurs.stop + (self.keeper is not None)


def _roles(s: Scenario) -> Roles:
    t0 = 2
    l0 = t0 + s.traders.count
    a0 = l0 + s.liquidators.count
    k = a0 + s.arbitrageurs.count
    return Roles(
        0,
        1,
        range(t0, l0),
        range(l0, a0),
        range(a0, k),
        k if keeper_needed(s) else None,
    )


class LiqSimModel(mesa.Model):
    """One run of a scenario on a fresh local chain."""

    def __init__(self, scenario: Scenario, seed: int = 0):
        super().__init__(seed=seed)
        self.scenario = scenario
        self.seed = seed
        self.block = 0  # index of the block being built (0-based)
        self.gas_free = not scenario.run.gas_enabled
        self.first_price = scenario.chain.fee_market == "first_price" and not self.gas_free
        self.no_base_fee = self.gas_free or self.first_price
        # independent streams: the price path and the trader draws do not depend on the margin
        # mode or on agent behaviour (common random numbers across paired runs)
        path_seq, trader_seq, agent_seq = np.random.SeedSequence(seed).spawn(3)
        profiles = draw_traders(scenario, np.random.default_rng(trader_seq))
        self.external = ExternalMarket.from_scenario(
            scenario,
            np.random.default_rng(path_seq),
            drawn_open_interest_usd(profiles, len(scenario.markets)),
        )
        agent_rng = np.random.default_rng(agent_seq)

        self.roles = _roles(scenario)
        self.session = self._make_session()
        prices0 = [self.external.price_e8(i, 0) for i in range(len(scenario.markets))]
        self.system: System = deploy_system(self.session, system_config(scenario, prices0))
        self.decoder = EventDecoder()
        self._fund_accounts(profiles)
        self.view = self._initial_view()

        self.background = background_demand(scenario, self.gas_free)
        self._activity: tuple[tuple[int, int], ...] = ()
        self.builder = BlockBuilder(
            self.session,
            background=self.background,
            errors=error_decoder(),
            start_base_fee_wei=0
            if self.no_base_fee
            else gwei_to_wei(scenario.chain.initial_base_fee_gwei),
            first_price=self.first_price,
        )
        self.view.next_base_fee_wei = self.builder.base_fee_wei()
        self._mempool_window = MempoolWindow(self.builder.mempool)  # a window, no copy
        self._fees: FeeEstimates | None = None
        # healthOf answers read since the chain's head block: (head, {candidates: answer})
        self._health_reads: tuple[int, dict[tuple[tuple[str, int], ...], list[tuple]]] = (-1, {})
        self.fee_history = FeeHistory(
            floor_tip_wei=0
            if self.gas_free
            else gwei_to_wei(scenario.background.calm_priority_fee_gwei)
        )
        self.wallets: dict[str, Wallet] = {}
        self.traders: list[Trader] = []
        self._make_agents(profiles, agent_rng)
        self.by_address: dict[str, ChainAgent] = {
            a.address: a for a in self.agents if isinstance(a, ChainAgent)
        }
        self.liquidatable: list[AccountState] = []
        self.venue_flow = VenueFlow(
            len(scenario.markets), lambda owner: isinstance(self.by_address.get(owner), Arbitrageur)
        )
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
        if r.keeper is not None:
            balances.append((accounts[r.keeper].address, int(s.keeper.eth_budget * ETHER)))
        gas_limit = GAS_FREE_BLOCK_GAS_LIMIT if self.gas_free else s.chain.block_gas_limit
        base_fee = 0 if self.no_base_fee else gwei_to_wei(s.chain.initial_base_fee_gwei)
        genesis = GenesisConfig(
            block_gas_limit=gas_limit, base_fee_wei=base_fee, balances=tuple(balances)
        )
        return ChainSession(
            genesis,
            seed=self.seed,
            n_accounts=r.count,
            block_time_s=s.run.block_time_s,
            backend=s.chain.backend,
            fork_url=s.chain.fork_url,
        )

    def _address(self, index: int) -> str:
        return self.session.accounts[index].address

    def _fund_accounts(self, profiles) -> None:
        """Mint each trader its collateral and top-up wallet and approve the exchange; open and
        fund each arbitrageur's CROSS subaccount and, with ``liquidators.mode = "takeover"``,
        each liquidator's (its capital). Set-up blocks come before block 0."""
        system = self.system
        calls: list[Call] = []
        for i, p in zip(self.roles.traders, profiles, strict=True):
            calls += system.fund_trader_calls(self._address(i), p.collateral_units + p.wallet_units)
        arb_units = usd_to_units(self.scenario.arbitrageurs.collateral_usd)
        for i in self.roles.arbitrageurs:
            calls += system.fund_trader_calls(self._address(i), arb_units)
            calls += system.open_account_calls(
                self._address(i), Arbitrageur.subaccount, "cross", 0, arb_units
            )
        lq = self.scenario.liquidators
        if lq.mode == "takeover":
            capital_units = usd_to_units(lq.capital_usd)
            for i in self.roles.liquidators:
                calls += system.fund_trader_calls(self._address(i), capital_units)
                calls += system.open_account_calls(self._address(i), 0, "cross", 0, capital_units)
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
                MARGIN_PRICE_SOURCES[m.margin_price],
                m.mark_half_life_s,
            )
            for m in system.config.markets
        ]
        mark_basis = [
            MarkBasis(*system.exchange.functions.markBasis(i).call())
            for i in range(len(system.config.markets))
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
            insurance_units=system.exchange.functions.insuranceFund().call(),
            mark_basis=mark_basis,
        )
        view.apply(self._setup_events)
        head = self.session.head()
        view.block_number, view.timestamp_s = head.number, head.timestamp
        return view

    def _make_agents(self, profiles, agent_rng: np.random.Generator) -> None:
        """Create the agents in a fixed order (reporter, traders, liquidators, arbitrageurs),
        each with its parameters and a wallet for its account."""
        s = self.scenario
        reporter = OracleReporter(self, self._address(self.roles.reporter), reporter_params(s))
        self._add_wallet(reporter, fee_cap_multiplier=s.oracle.max_fee_multiplier)
        override = s.run.margin_mode_override
        params = trader_params(s)
        for i, p in zip(self.roles.traders, profiles, strict=True):
            mode = p.mode if override == "none" else override
            trader = Trader(self, self._address(i), p, mode, params)
            self.traders.append(trader)
            self._add_wallet(trader, auto_reprice=params.speed_up_after_blocks == 0)
        lq = s.liquidators
        for i in self.roles.liquidators:
            latency = int(agent_rng.integers(lq.latency_blocks_min, lq.latency_blocks_max + 1))
            self._add_wallet(Liquidator(self, self._address(i), liquidator_params(s, latency)))
        for k, i in enumerate(self.roles.arbitrageurs):
            self._add_wallet(Arbitrageur(self, self._address(i), arbitrageur_params(s, k)))
        if self.roles.keeper is not None:
            self._add_wallet(Keeper(self, self._address(self.roles.keeper), keeper_params(s)))

    def _add_wallet(
        self, agent: ChainAgent, fee_cap_multiplier: float = 2, auto_reprice: bool = True
    ) -> None:
        self.wallets[agent.address] = Wallet(
            agent.address,
            agent.kind,
            self.session,
            self.builder,
            self.system,
            gas_free=self.gas_free,
            fee_cap_multiplier=fee_cap_multiplier,
            auto_reprice=auto_reprice,
        )

    # ------------------------------------------------------------ observation

    def gas_token_price_usd(self) -> float:
        c = self.scenario.chain
        if c.gas_token_market:
            return self.external.price(c.gas_token_market, self.block)
        return c.gas_token_price_usd

    def external_prices(self) -> list[float]:
        """Every market's external price at the block being built."""
        return [self.external.price(i, self.block) for i in range(len(self.scenario.markets))]

    def confirm_liquidatable(
        self, candidates: Sequence[AccountState]
    ) -> list[tuple[AccountState, int]]:
        """One ``healthOf`` read: the candidates the chain says are liquidatable, with equity.
        The same candidates asked again before the next block is mined get the same answer
        without another call (liquidators often share a candidate list)."""
        head = self.session.head().number
        if self._health_reads[0] != head:
            self._health_reads = (head, {})
        keys = tuple((a.owner, a.subaccount) for a in candidates)
        healths = self._health_reads[1].get(keys)
        if healths is None:
            healths = self._health_reads[1][keys] = self.system.healths(
                [a.owner for a in candidates], [a.subaccount for a in candidates]
            )
        return [(a, h[0]) for a, h in zip(candidates, healths, strict=True) if h[4]]

    def _fee_estimates(self) -> FeeEstimates:
        """The next block's fee estimates, one object for every agent that sees the same next
        base fee (the tip and the gas token's price are read when asked)."""
        fees = self._fees
        if fees is None or fees.next_base_fee_wei != self.view.next_base_fee_wei:
            fees = self._fees = FeeEstimates(
                self.view.next_base_fee_wei,
                self.gas_free,
                self.gas_token_price_usd,
                self.fee_history.suggest_tip_wei,
            )
        return fees

    def view_for(self, agent: ChainAgent) -> AgentView:
        """What ``agent`` may know this step."""
        wallet = self.wallets[agent.address]
        return AgentView(
            step=self.block,
            block_time_s=self.session.block_time_s,
            chain=self.view,
            mempool=self._mempool_window,
            fees=self._fee_estimates(),
            liquidatable=self.liquidatable,
            _external=self.external,
            _health_of=self.confirm_liquidatable,
            _own_pending=wallet.pending,
        )

    def act(self, agent: mesa.Agent) -> None:
        """Let ``agent`` decide on this step's view; its wallet carries out the intents."""
        wallet = self.wallets.get(getattr(agent, "address", None))
        if wallet is None:
            return  # not an agent with an account
        decisions = agent.decide(self.view_for(agent))
        wallet.carry_out(decisions, self.block, self.view.next_base_fee_wei)

    # --------------------------------------------------------------------- step

    def step(self) -> None:
        for wallet in self.wallets.values():  # creation order: deterministic
            wallet.reprice_stuck(self.block, self.view.next_base_fee_wei)
        self.agents.shuffle_do(self.act)
        self.background.observe(self.external_prices(), self._activity)
        result = self.builder.build_block()
        self._absorb(result)
        self.block += 1

    def _absorb(self, result: BlockResult) -> None:
        """Hand receipts and events to wallets, agents, the view and the recorder."""
        self.recorder.begin_block(result)
        block_events: list[Event] = []
        for rec, mined in zip(result.records, result.block.txs, strict=True):
            events = self.decoder.decode_all(
                mined.logs, block=rec.block_number, tx_index=rec.index_in_block
            )
            spill = spillover_closes(self.view.book, events, self.view.margin_prices_e8)
            self.recorder.before_tx(rec, events)
            self.view.apply(events)
            self.venue_flow.track(events, spill)
            block_events += events
            agent = self.by_address.get(rec.sender)
            if agent is not None:
                self.wallets[rec.sender].included(rec)
                for hedge in agent.on_included(rec, events):
                    if isinstance(hedge, ExternalTrade):  # a liquidator's external sale or buy-back
                        self.external.apply_trade(
                            hedge.market,
                            hedge.notional_usd_signed,
                            self.block,
                            forced_usd=hedge.forced_usd,
                        )
                    else:
                        self.venue_flow.hedge(hedge, self.external, self.block)
        for dropped in result.dropped:
            agent = self.by_address.get(dropped.sender)
            if agent is not None:
                self.wallets[dropped.sender].dropped(dropped)
                agent.on_dropped(dropped)
        self.view.block_number = result.block.number
        self.view.timestamp_s = result.block.timestamp
        self.view.next_base_fee_wei = result.next_base_fee_wei
        self._activity = activity_of(result.records)
        self.fee_history.record(
            BlockTips(
                result.block.number,
                lowest_tips(result.included_tips),
                (result.gas_used + result.background_gas_used) / result.block.head.gas_limit,
            )
        )
        self.liquidatable = self.view.book.mark_liquidatable(
            self.view.margin_prices_e8(), self.block
        )
        self.recorder.after_block(result, block_events)

    def run(self, blocks: int | None = None, progress=None) -> None:
        """Run ``blocks`` steps (the scenario's length by default)."""
        n = self.scenario.run.blocks if blocks is None else blocks
        for _ in range(n):
            self.step()
            if progress is not None:
                progress(self.block)
