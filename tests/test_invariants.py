"""Hypothesis stateful test on the real contracts: random deposits, trades, price moves,
liquidations, transfers and withdrawals, with the exchange's invariants checked after every step.

Invariants:
- the exchange's token balance equals total collateral + insurance fund + counterparty fund, and
  covers all collateral plus the insurance fund (the counterparty fund never goes negative here);
- total collateral equals the sum of every account's collateral;
- no account is liquidatable right after a trade that passed its initial-margin check;
- a liquidated account holds no position;
- bad debt only grows when the insurance fund is empty.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sim.chain.session import ChainSession
from sim.exchange.client import SystemConfig, deploy_system
from sim.units import BASE as ONE
from sim.units import USD
from tests.helpers import BTC, E8, ETH, open_account, set_market, trader

N_TRADERS = 3
# (trader index, subaccount): sub 0 is CROSS, sub 1 ISOLATED on ETH, sub 2 ISOLATED on BTC
ACCOUNTS = [(t, sub) for t in range(N_TRADERS) for sub in range(3)]
SUB_MARKETS = {0: (ETH, BTC), 1: (ETH,), 2: (BTC,)}


class ExchangeMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        session = ChainSession(seed=7, n_accounts=24)
        self.s = deploy_system(session, SystemConfig(insurance_fund_units=3_000 * USD))
        self.prices = {ETH: 2_000.0, BTC: 60_000.0}
        for t in range(N_TRADERS):
            owner = trader(self.s, t)
            open_account(self.s, owner, 0, "cross", 0, 5_000)
            open_account(self.s, owner, 1, "isolated", ETH, 2_000)
            open_account(self.s, owner, 2, "isolated", BTC, 2_000)
        self.bad_debt = 0

    # ---------------------------------------------------------------- helpers

    def owner(self, acct):
        return trader(self.s, ACCOUNTS[acct][0])

    def f(self):
        return self.s.exchange.functions

    # ------------------------------------------------------------------ rules

    @rule(acct=st.integers(0, len(ACCOUNTS) - 1), usd=st.integers(1, 3_000))
    def deposit(self, acct, usd):
        _t, sub = ACCOUNTS[acct]
        owner = self.owner(acct)
        self.s.send_batch(
            [
                self.s.call(self.s.deployer, self.s.token, "mint", owner, usd * USD, gas=100_000),
                self.s.call(owner, self.s.exchange, "deposit", sub, usd * USD, gas=150_000),
            ]
        )

    @rule(acct=st.integers(0, len(ACCOUNTS) - 1), usd=st.integers(1, 6_000))
    def withdraw(self, acct, usd):
        _t, sub = ACCOUNTS[acct]
        self.s.try_send(
            self.s.call(self.owner(acct), self.s.exchange, "withdraw", sub, usd * USD, gas=250_000)
        )

    @rule(
        t=st.integers(0, N_TRADERS - 1),
        src=st.integers(0, 2),
        dst=st.integers(0, 2),
        usd=st.integers(1, 3_000),
    )
    def transfer(self, t, src, dst, usd):
        owner = trader(self.s, t)
        self.s.try_send(
            self.s.call(
                owner, self.s.exchange, "transferCollateral", src, dst, usd * USD, gas=250_000
            )
        )

    @rule(
        acct=st.integers(0, len(ACCOUNTS) - 1),
        pick=st.integers(0, 1),
        notional_usd=st.integers(-60_000, 60_000).filter(lambda x: abs(x) >= 10),
    )
    def trade(self, acct, pick, notional_usd):
        _t, sub = ACCOUNTS[acct]
        markets = SUB_MARKETS[sub]
        market = markets[pick % len(markets)]
        owner = self.owner(acct)
        size = notional_usd * ONE // int(self.prices[market])
        before = self.f().getPosition(owner, sub, market).call()[0]
        mined = self.s.try_send(self.s.trade_call(owner, sub, market, size))
        after = before + size
        risk_increasing = abs(after) > abs(before) or (
            before != 0 and after != 0 and (before > 0) != (after > 0)
        )
        if mined.status == 1 and risk_increasing:
            h = self.s.health(owner, sub)
            assert h["equity"] >= h["initial_requirement"]
            assert not h["liquidatable"], (
                "liquidatable right after passing the initial-margin check"
            )

    @rule(market=st.sampled_from([ETH, BTC]), move=st.floats(-0.25, 0.25))
    def move_price(self, market, move):
        self.prices[market] = max(self.prices[market] * (1 + move), 1.0)
        set_market(self.s, market, self.prices[market])

    @rule(acct=st.integers(0, len(ACCOUNTS) - 1))
    def liquidate(self, acct):
        _t, sub = ACCOUNTS[acct]
        owner = self.owner(acct)
        liquidatable = self.s.health(owner, sub)["liquidatable"]
        mined = self.s.try_send(self.s.liquidate_call(trader(self.s, 9), owner, sub, n_markets=2))
        assert (mined.status == 1) == liquidatable
        if mined.status == 1:
            assert self.f().getAccount(owner, sub).call()[2] == 0  # market mask
            for m in (ETH, BTC):
                assert self.f().getPosition(owner, sub, m).call()[0] == 0

    # ------------------------------------------------------------- invariants

    @invariant()
    def tokens_are_conserved(self):
        f = self.f()
        balance = self.s.token.functions.balanceOf(self.s.exchange.address).call()
        total, insurance, cp = (
            f.totalCollateral().call(),
            f.insuranceFund().call(),
            f.counterpartyFund().call(),
        )
        assert balance == total + insurance + cp
        assert cp >= 0
        assert balance >= total + insurance
        accounts_sum = sum(
            f.getAccount(self.owner(i), ACCOUNTS[i][1]).call()[3] for i in range(len(ACCOUNTS))
        )
        whale = f.getAccount(trader(self.s, 15), 0).call()[3]
        assert total == accounts_sum + whale

    @invariant()
    def bad_debt_only_when_insurance_empty(self):
        bad = self.f().totalBadDebt().call()
        assert bad >= self.bad_debt
        if bad > self.bad_debt:
            assert self.f().insuranceFund().call() == 0
        self.bad_debt = bad

    @invariant()
    def prices_positive(self):
        for m in (ETH, BTC):
            assert self.s.exchange.functions.indexPriceE8(m).call() > 0
            assert abs(self.s.exchange.functions.indexPriceE8(m).call() - self.prices[m] * E8) <= 1


ExchangeMachine.TestCase.settings = settings(
    max_examples=10,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestExchangeInvariants = ExchangeMachine.TestCase
