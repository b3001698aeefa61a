"""Hypothesis stateful test on the real contracts: random deposits, trades, price moves,
liquidations, backstop takeovers, auto-deleveraging, transfers and withdrawals, with the exchange's
invariants checked after every step.

Each example deploys a system whose liquidation waterfall is drawn: partial-liquidation parameters
per market, the backstop threshold, auto-deleveraging on or off and the insurance fund (small, so
that deficits beyond it, and so ADL and bad debt, happen). All zeros is today's default system.

Invariants and checks:
- the exchange's token balance equals total collateral + insurance fund + counterparty fund (which
  never goes negative); total collateral equals the sum of every account's collateral;
- per market, the sum of all positions' sizes (backstop vault included) equals the base the venue
  sold (initial base reserve - current base reserve), and the exchange's holder list finds them all;
- no account is liquidatable right after a trade that passed its initial-margin check;
- a liquidation succeeds only on a liquidatable account (with ADL on it may defer with
  `DeleverageRequired`), and closes exactly the partial slice, at most ceil(factor x size), of a
  large position and all of a small one;
- a backstop takeover or a deleveraging succeeds exactly when its conditions hold, and leaves the
  account without positions or collateral;
- auto-deleveraging never leaves a counterparty liquidatable;
- total bad debt only grows, and only when the insurance fund is empty.

Profiles: the CI profile (12 examples x 25 steps) runs in `make test`; `LIQSIM_SOAK=1` (`make soak`)
runs >= 10,000 steps and prints the steps per second.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sim.chain.events import EventDecoder
from sim.chain.session import ChainSession
from sim.exchange.client import SystemConfig, deploy_system, fixture_markets, revert_name
from sim.units import BASE as ONE
from sim.units import PPM, USD
from tests.helpers import (
    BTC,
    E8,
    ETH,
    WHALE_INDEX,
    Reader,
    liquidation_size,
    open_account,
    set_market,
    trader,
)

SOAK = os.environ.get("LIQSIM_SOAK") == "1"
STATS = {
    "steps": 0,
    "examples": 0,
    "liquidations": 0,
    "partial": 0,
    "deferred_to_adl": 0,
    "backstops": 0,
    "deleveragings": 0,
    "adl_fills": 0,
}

RULES: dict[str, int] = {}


def _count(rule_name: str) -> None:
    STATS["steps"] += 1
    RULES[rule_name] = RULES.get(rule_name, 0) + 1


N_TRADERS = 3
# (trader index, subaccount): sub 0 is CROSS, sub 1 ISOLATED on ETH, sub 2 ISOLATED on BTC
ACCOUNTS = [(t, sub) for t in range(N_TRADERS) for sub in range(3)]
SUB_MARKETS = {0: (ETH, BTC), 1: (ETH,), 2: (BTC,)}
MARKETS = (ETH, BTC)
LIQUIDATOR = 9


class ExchangeMachine(RuleBasedStateMachine):
    # ---------------------------------------------------------------- set-up

    @initialize(
        factors=st.tuples(*[st.sampled_from([0, 200_000, 500_000, PPM])] * 2),
        full_close_usd=st.tuples(*[st.sampled_from([0, 20_000, 50_000])] * 2),
        backstop_ppm=st.sampled_from([0, 666_667, PPM]),
        adl=st.booleans(),
        insurance_usd=st.sampled_from([300, 3_000]),
    )
    def deploy(self, factors, full_close_usd, backstop_ppm, adl, insurance_usd):
        markets = tuple(
            replace(m, partial_close_factor_ppm=f, full_close_notional_units=n * USD)
            for m, f, n in zip(fixture_markets(), factors, full_close_usd, strict=True)
        )
        config = SystemConfig(
            markets=markets,
            insurance_fund_units=insurance_usd * USD,
            backstop_threshold_ppm=backstop_ppm,
            adl_enabled=adl,
        )
        self.s = deploy_system(ChainSession(seed=7, n_accounts=24), config)
        self.read = Reader(self.s)
        self.prices = {ETH: 2_000.0, BTC: 60_000.0}
        for t in range(N_TRADERS):
            owner = trader(self.s, t)
            open_account(self.s, owner, 0, "cross", 0, 5_000)
            open_account(self.s, owner, 1, "isolated", ETH, 2_000)
            open_account(self.s, owner, 2, "isolated", BTC, 2_000)
        whale = trader(self.s, WHALE_INDEX)
        self.accounts = [(trader(self.s, t), sub) for t, sub in ACCOUNTS]
        # every account that can hold a position: the traders, the price-setting whale (opened by
        # the first price move) and the backstop vault (opened by the first takeover)
        self.everyone = [
            *self.accounts,
            (whale, 0),
            tuple(self.s.exchange.functions.backstopVault().call()),
        ]
        self.vault = self.everyone[-1]
        self.listed = {m: [] for m in MARKETS}
        self._healths, self._healths_block = [], -1
        self.bad_debt = 0
        self.decoder = EventDecoder()
        STATS["examples"] += 1

    # ---------------------------------------------------------------- helpers

    def sizes(self, owner, sub):
        return {m: self.read.position(owner, sub, m)[0] for m in MARKETS}

    def healths(self):
        """Every trader account's health, read once per block (rules' preconditions ask often)."""
        block = self.s.session.backend.head().number
        if self._healths_block != block:
            self._healths = self.read.healths(self.accounts)
            self._healths_block = block
        return self._healths

    def due(self, qualifies):
        """The trader accounts whose health ``qualifies``."""
        return [a for a, h in zip(self.accounts, self.healths(), strict=True) if qualifies(h)]

    def liquidatable(self, h):
        return h["liquidatable"]

    def below_backstop(self, h):
        threshold = self.s.config.backstop_threshold_ppm
        return h["notional"] > 0 and h["equity"] * PPM < threshold * h["maintenance_requirement"]

    def bankrupt(self, h):
        return h["notional"] > 0 and h["equity"] + self.read.uint("insuranceFund") < 0

    # ------------------------------------------------------------------ rules

    @rule(acct=st.integers(0, len(ACCOUNTS) - 1), usd=st.integers(1, 3_000))
    def deposit(self, acct, usd):
        _count("deposit")
        owner, sub = self.accounts[acct]
        self.s.send_batch(
            [
                self.s.call(self.s.deployer, self.s.token, "mint", owner, usd * USD, gas=100_000),
                self.s.call(owner, self.s.exchange, "deposit", sub, usd * USD, gas=150_000),
            ]
        )

    @rule(acct=st.integers(0, len(ACCOUNTS) - 1), usd=st.integers(1, 6_000))
    def withdraw(self, acct, usd):
        _count("withdraw")
        owner, sub = self.accounts[acct]
        self.s.try_send(
            self.s.call(owner, self.s.exchange, "withdraw", sub, usd * USD, gas=250_000)
        )

    @rule(
        t=st.integers(0, N_TRADERS - 1),
        src=st.integers(0, 2),
        dst=st.integers(0, 2),
        usd=st.integers(1, 3_000),
    )
    def transfer(self, t, src, dst, usd):
        _count("transfer")
        owner = trader(self.s, t)
        self.s.try_send(
            self.s.call(
                owner, self.s.exchange, "transferCollateral", src, dst, usd * USD, gas=250_000
            )
        )

    def _trade(self, acct, market, size):
        owner, sub = self.accounts[acct]
        before = self.read.position(owner, sub, market)[0]
        mined = self.s.try_send(self.s.trade_call(owner, sub, market, size))
        after = before + size
        risk_increasing = abs(after) > abs(before) or (
            before != 0 and after != 0 and (before > 0) != (after > 0)
        )
        if mined.status == 1 and risk_increasing:
            (h,) = self.read.healths([(owner, sub)])
            assert h["equity"] >= h["initial_requirement"]
            assert not h["liquidatable"], (
                "liquidatable right after passing the initial-margin check"
            )

    @rule(
        acct=st.integers(0, len(ACCOUNTS) - 1),
        pick=st.integers(0, 1),
        notional_usd=st.integers(-60_000, 60_000).filter(lambda x: abs(x) >= 10),
    )
    def trade(self, acct, pick, notional_usd):
        _count("trade")
        markets = SUB_MARKETS[ACCOUNTS[acct][1]]
        market = markets[pick % len(markets)]
        self._trade(acct, market, notional_usd * ONE // int(self.prices[market]))

    @rule(
        acct=st.integers(0, len(ACCOUNTS) - 1),
        pick=st.integers(0, 1),
        long=st.booleans(),
        leverage=st.integers(5, 19),
    )
    def lever_up(self, acct, pick, long, leverage):
        """Open or grow a position to ``leverage`` x the account's equity (the initial margin
        allows 20x), so that price moves make accounts liquidatable and bankrupt."""
        _count("lever_up")
        markets = SUB_MARKETS[ACCOUNTS[acct][1]]
        self._lever_up(acct, markets[pick % len(markets)], long, leverage)

    def _lever_up(self, acct, market, long, leverage):
        (h,) = self.read.healths([self.accounts[acct]])
        room_usd = (h["equity"] * leverage - h["notional"]) / USD
        size = int(room_usd * ONE / self.prices[market])
        if size > 0:
            self._trade(acct, market, size if long else -size)

    @rule(market=st.sampled_from(MARKETS), move=st.floats(-0.25, 0.25))
    def move_price(self, market, move):
        _count("move_price")
        self._move(market, move)

    @rule(
        acct=st.integers(0, len(ACCOUNTS) - 1),
        pick=st.integers(0, 1),
        long=st.booleans(),
        leverage=st.integers(5, 19),
        move=st.floats(0.02, 0.3),
    )
    def shock(self, acct, pick, long, leverage, move):
        """A crash scenario: a trader levers up, then the market moves against it by ``move``."""
        _count("shock")
        markets = SUB_MARKETS[ACCOUNTS[acct][1]]
        market = markets[pick % len(markets)]
        self._lever_up(acct, market, long, leverage)
        self._move(market, -move if long else move)

    def _move(self, market, move):
        self.prices[market] = max(self.prices[market] * (1 + move), 1.0)
        set_market(self.s, market, self.prices[market])

    @rule(acct=st.integers(0, len(ACCOUNTS) - 1))
    def liquidate(self, acct):
        _count("liquidate")
        self._liquidate(*self.accounts[acct])

    @precondition(lambda self: self.due(self.liquidatable))
    @rule(i=st.integers(0, len(ACCOUNTS) - 1))
    def liquidate_due(self, i):
        _count("liquidate_due")
        due = self.due(self.liquidatable)
        self._liquidate(*due[i % len(due)])

    def _liquidate(self, owner, sub):
        (h,) = self.read.healths([(owner, sub)])
        before = self.sizes(owner, sub)
        prices = {m: self.read.index_price(m) for m in MARKETS}  # INDEX is the margin price
        mined = self.s.try_send(
            self.s.liquidate_call(trader(self.s, LIQUIDATOR), owner, sub, n_markets=2)
        )
        if mined.status != 1:
            reason = revert_name(mined.revert_data)
            if h["liquidatable"]:
                assert reason == "DeleverageRequired" and self.s.config.adl_enabled, reason
                assert any(before.values())
                STATS["deferred_to_adl"] += 1
            else:
                assert reason == "AccountHealthy", reason
            return
        assert h["liquidatable"], "a healthy account was liquidated"
        after = self.sizes(owner, sub)
        STATS["liquidations"] += 1
        STATS["partial"] += any(after.values())
        for m in MARKETS:
            spec = self.s.config.markets[m]
            factor, full = spec.partial_close_factor_ppm, spec.full_close_notional_units
            closed = before[m] - after[m]
            assert closed == liquidation_size(before[m], prices[m], factor, full)
            if 0 < factor < PPM and -(-abs(before[m]) * prices[m] // 10**20) > full:
                assert abs(closed) <= -(-abs(before[m]) * factor // PPM)  # ceil(factor x size)
        mask = sum(1 << m for m in MARKETS if after[m] != 0)
        assert self.read.account(owner, sub)[2] == mask

    @rule(acct=st.integers(0, len(ACCOUNTS) - 1))
    def backstop(self, acct):
        _count("backstop")
        self._backstop(*self.accounts[acct])

    @precondition(lambda self: self.due(self.below_backstop))
    @rule(i=st.integers(0, len(ACCOUNTS) - 1))
    def backstop_due(self, i):
        _count("backstop_due")
        due = self.due(self.below_backstop)
        self._backstop(*due[i % len(due)])

    def _backstop(self, owner, sub):
        (h,) = self.read.healths([(owner, sub)])
        threshold = self.s.config.backstop_threshold_ppm
        insurance = self.read.uint("insuranceFund")
        has_positions = any(self.sizes(owner, sub).values())
        mined = self.s.try_send(
            self.s.backstop_call(trader(self.s, LIQUIDATOR), owner, sub, n_markets=2)
        )
        if threshold == 0:
            expected = "BackstopDisabled"
        elif not has_positions:
            expected = "NothingToLiquidate"
        elif h["equity"] * PPM >= threshold * h["maintenance_requirement"]:
            expected = "AboveBackstopThreshold"
        elif self.s.config.adl_enabled and h["equity"] + insurance < 0:
            expected = "DeleverageRequired"
        else:
            expected = ""
        reason = "" if mined.status == 1 else revert_name(mined.revert_data)
        assert reason == expected
        if mined.status == 1:
            STATS["backstops"] += 1
            assert not any(self.sizes(owner, sub).values())
            assert self.read.account(owner, sub)[2:] == (0, 0)

    @rule(acct=st.integers(0, len(ACCOUNTS) - 1))
    def deleverage(self, acct):
        _count("deleverage")
        self._deleverage(*self.accounts[acct])

    @precondition(lambda self: self.s.config.adl_enabled and self.due(self.bankrupt))
    @rule(i=st.integers(0, len(ACCOUNTS) - 1))
    def deleverage_due(self, i):
        _count("deleverage_due")
        due = self.due(self.bankrupt)
        self._deleverage(*due[i % len(due)])

    def _deleverage(self, owner, sub):
        insurance = self.read.uint("insuranceFund")
        (h,) = self.read.healths([(owner, sub)])
        has_positions = any(self.sizes(owner, sub).values())
        mined = self.s.try_send(
            self.s.deleverage_call(trader(self.s, LIQUIDATOR), owner, sub, n_markets=2)
        )
        reason = "" if mined.status == 1 else revert_name(mined.revert_data)
        if not self.s.config.adl_enabled:
            assert reason == "AdlDisabled"
        elif not has_positions:
            assert reason == "NothingToLiquidate"
        elif h["equity"] + insurance < 0:
            assert reason == ""
        elif not h["liquidatable"]:
            assert reason == "InsuranceCanCover"
        else:  # deleveraged only if a liquidation's venue closes would exhaust the fund
            assert reason in ("", "InsuranceCanCover")
        if mined.status != 1:
            return
        STATS["deleveragings"] += 1
        assert not any(self.sizes(owner, sub).values())
        assert self.read.account(owner, sub)[2:] == (0, 0)
        counterparties = set()
        for ev in self.decoder.decode_all(mined.logs):
            if ev.name == "Deleveraged":
                STATS["adl_fills"] += 1
                counterparties.add(
                    (ev.args["counterpartyOwner"], ev.args["counterpartySubaccount"])
                )
        assert not counterparties & {self.vault, (owner, sub)}
        for cp, h in zip(counterparties, self.read.healths(list(counterparties)), strict=True):
            assert not h["liquidatable"], f"ADL left counterparty {cp} liquidatable"

    # ------------------------------------------------------------- invariants

    @invariant()
    def tokens_are_conserved(self):
        r = self.read
        balance = r.token_balance(self.s.exchange.address)
        total, insurance, cp = (
            r.uint("totalCollateral"),
            r.uint("insuranceFund"),
            r.uint("counterpartyFund"),
        )
        assert balance == total + insurance + cp
        assert cp >= 0
        assert balance >= total + insurance
        assert total == sum(r.account(o, sub)[3] for o, sub in self.everyone)

    @invariant()
    def open_interest_equals_venue_inventory(self):
        for m in MARKETS:
            self.listed[m] += self.read.holders(m, start=len(self.listed[m]))  # append-only
            sizes = {a: self.read.position(*a, m)[0] for a in self.everyone}
            sold = self.s.config.markets[m].venue_base_reserve - self.read.base_reserve(m)
            assert sum(sizes.values()) == sold
            assert {a for a, size in sizes.items() if size} <= set(self.listed[m])

    @invariant()
    def bad_debt_only_grows_and_only_when_insurance_is_empty(self):
        bad = self.read.uint("totalBadDebt")
        assert bad >= self.bad_debt
        if bad > self.bad_debt:
            assert self.read.uint("insuranceFund") == 0
        self.bad_debt = bad

    @invariant()
    def prices_positive(self):
        for m in MARKETS:
            price = self.read.index_price(m)
            assert price > 0 and abs(price - self.prices[m] * E8) <= 1


PROFILE = (
    # >= 10,000 steps: up to 100 steps per example, about 76 on average
    {"max_examples": 150, "stateful_step_count": 100}
    if SOAK
    else {"max_examples": 12, "stateful_step_count": 25}
)
ExchangeMachine.TestCase.settings = settings(
    **PROFILE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestExchangeInvariants = ExchangeMachine.TestCase


@pytest.fixture(scope="module", autouse=True)
def _report_speed():
    """With LIQSIM_SOAK=1 (`make soak`, run with -s), print the steps run and steps per second."""
    start = time.perf_counter()
    yield
    if SOAK or os.environ.get("LIQSIM_STATS") == "1":
        elapsed = time.perf_counter() - start
        outcomes = ", ".join(f"{k} {v}" for k, v in STATS.items() if k not in ("steps", "examples"))
        print(
            f"\nsoak: {STATS['steps']} steps in {STATS['examples']} examples, {elapsed:.0f} s, "
            f"{STATS['steps'] / elapsed:.1f} steps/s ({outcomes}; rules {RULES})"
        )
