"""Liquidation by takeover (``MarginExchange.takeover``, ``liquidators.mode = "takeover"``) on the
real contracts, the account mirror following it, the liquidator agent's capital, external sale
and unwinding, and a model run end to end."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agents.intents import ExternalTrade, Send, Takeover, Trade
from agents.liquidator import Liquidator, LiquidatorParams, unwind_label
from sim.chain.backend import RawLog
from sim.chain.events import EventDecoder
from sim.exchange.book import AccountBook, MarketRisk, health_of
from sim.exchange.client import System, revert_name
from sim.units import BASE, PRICE_SCALE, USD
from tests.helpers import (
    ETH,
    assert_conserved,
    collateral,
    funds,
    notional,
    open_account,
    position,
    reserves,
    revert_reason,
    set_market,
    trader,
    value,
    waterfall_system,
)

PPM = 10**6


def _book(s: System, alice: str) -> None:
    """Alice: ISOLATED 10 ETH long on 1,100 USD (liquidatable below about 1,948)."""
    open_account(s, alice, 0, "isolated", ETH, 1_100)
    s.send(s.trade_call(alice, 0, ETH, 10 * BASE))


def test_takeover_moves_the_positions_at_the_margin_price_without_a_venue_trade():
    s = waterfall_system()
    alice, liq = trader(s, 0), trader(s, 9)
    _book(s, alice)
    open_account(s, liq, 0, "cross", ETH, 50_000)
    set_market(s, ETH, 1_900)
    basis = position(s, alice, 0, ETH)[1]
    coll_before = collateral(s, alice, 0)
    venue_before = reserves(s, ETH)
    insurance_before = funds(s)["insurance"]
    wallet_before = s.token.functions.balanceOf(liq).call()
    price = 1_900 * PRICE_SCALE
    mined = s.send(s.takeover_call(liq, alice, 0, 0, 1))

    quote = value(10 * BASE, price)
    assert position(s, alice, 0, ETH) == (0, 0)
    assert position(s, liq, 0, ETH) == (10 * BASE, quote)  # taken at the margin price
    assert reserves(s, ETH) == venue_before  # no venue trade, no price impact
    penalty = -(-notional(10 * BASE, price) * 15_000 // PPM)
    equity = coll_before + quote - basis
    paid = min(penalty, equity)
    reward = 500_000 * penalty // PPM * paid // penalty
    assert collateral(s, alice, 0) == equity - paid
    assert s.token.functions.balanceOf(liq).call() - wallet_before == reward  # as liquidate
    assert funds(s)["insurance"] - insurance_before == paid - reward
    assert_conserved(s)
    events = EventDecoder().decode_all(mined.logs)
    names = [e.name for e in events if e.address == s.exchange.address]
    assert "PositionTakenOver" in names and names[-1] == "Liquidated"
    moved = next(e for e in events if e.name == "PositionTakenOver").args
    assert (moved["size"], moved["priceE8"], moved["quote"], moved["liquidator"]) == (
        10 * BASE,
        price,
        quote,
        liq,
    )
    print("takeover gas used", mined.gas_used)


def test_the_mirror_follows_a_takeover_and_a_netting_one():
    """The account book rebuilt from events equals the chain for both sides, also when the
    liquidator already holds the opposite position (the takeover nets and realizes its PnL)."""
    s = waterfall_system()
    alice, bob, liq = trader(s, 0), trader(s, 1), trader(s, 9)
    decoder = EventDecoder()
    book = AccountBook([MarketRisk(50_000, 30_000, 15_000, 500_000)] * 2, s.exchange.address)
    open_account(s, liq, 0, "cross", ETH, 50_000)
    _book(s, alice)
    open_account(s, bob, 0, "cross", ETH, 1_100)
    s.send(s.trade_call(bob, 0, ETH, -10 * BASE))
    s.send(s.trade_call(liq, 0, ETH, 4 * BASE))  # the liquidator is long 4 ETH already
    set_market(s, ETH, 2_150)  # bob's short is under water
    s.send(s.takeover_call(liq, bob, 0, 0, 1))
    set_market(s, ETH, 1_850)  # alice's long too
    s.send(s.takeover_call(liq, alice, 0, 0, 1))
    # rebuild from every log of the chain's blocks
    w3 = s.session.w3
    for n in range(1, w3.eth.block_number + 1):
        for h in w3.eth.get_block(n)["transactions"]:
            receipt = w3.eth.get_transaction_receipt(h)
            logs = [
                RawLog(lg["address"], tuple(bytes(t) for t in lg["topics"]), bytes(lg["data"]))
                for lg in receipt["logs"]
            ]
            book.apply(e for e in decoder.decode_all(logs) if e.address == s.exchange.address)
    prices = [s.exchange.functions.marginPriceE8(m).call() for m in range(2)]
    for owner in (alice, bob, liq):
        acct = book.get(owner, 0)
        assert acct.collateral_units == collateral(s, owner, 0)
        assert {m: (p.size_base, p.open_notional_units) for m, p in acct.positions.items()} == {
            m: position(s, owner, 0, m) for m in range(2) if position(s, owner, 0, m)[0] != 0
        }
        h = s.health(owner, 0)
        assert health_of(acct, prices, book.risk).equity_units == h["equity"]
    assert position(s, liq, 0, ETH)[0] == 4 * BASE - 10 * BASE + 10 * BASE
    assert_conserved(s)


def test_a_liquidator_without_the_capital_is_refused():
    s = waterfall_system()
    alice, liq = trader(s, 0), trader(s, 9)
    _book(s, alice)
    open_account(s, liq, 0, "cross", ETH, 500)  # 10 ETH at 1,900 needs 950 USD of initial margin
    open_account(s, liq, 1, "isolated", ETH, 50_000)
    set_market(s, ETH, 1_900)
    assert revert_reason(s, s.takeover_call(liq, alice, 0, 0, 1)) == "LiquidatorMarginShort"
    assert revert_reason(s, s.takeover_call(liq, alice, 0, 1, 1)) == "WrongMarginMode"
    assert revert_reason(s, s.takeover_call(alice, alice, 0, 0, 1)) == "SameSubaccount"
    assert revert_reason(s, s.takeover_call(liq, alice, 0, 7, 1)) == "UnknownSubaccount"
    open_account(s, liq, 2, "cross", ETH, 2_000)
    assert revert_reason(s, s.takeover_call(liq, alice, 0, 2, 1)) == ""
    assert revert_reason(s, s.takeover_call(liq, alice, 0, 2, 1)) == "NothingToLiquidate"


def test_takeover_of_an_account_under_water_takes_the_insurance_and_bad_debt_path():
    s = waterfall_system(insurance_usd=0)
    alice, liq = trader(s, 0), trader(s, 9)
    _book(s, alice)
    open_account(s, liq, 0, "cross", ETH, 50_000)
    set_market(s, ETH, 1_800)
    basis = position(s, alice, 0, ETH)[1]
    equity = collateral(s, alice, 0) + value(10 * BASE, 1_800 * PRICE_SCALE) - basis
    assert equity < 0
    mined = s.send(s.takeover_call(liq, alice, 0, 0, 1))
    liquidated = next(e for e in EventDecoder().decode_all(mined.logs) if e.name == "Liquidated")
    assert liquidated.args["badDebt"] == -equity and liquidated.args["penaltyPaid"] == 0
    assert funds(s)["bad_debt"] == -equity and collateral(s, alice, 0) == 0
    assert_conserved(s)


def test_takeover_takes_the_partial_slice_of_a_large_position():
    s = waterfall_system(eth_partial=(200_000, 100_000))
    alice, liq = trader(s, 0), trader(s, 9)
    open_account(s, alice, 0, "isolated", ETH, 12_000)
    s.send(s.trade_call(alice, 0, ETH, 100 * BASE))  # 200,000 USD: above full_close_notional
    open_account(s, liq, 0, "cross", ETH, 100_000)
    set_market(s, ETH, 1_900)
    mined = s.send(s.takeover_call(liq, alice, 0, 0, 1))
    assert position(s, liq, 0, ETH)[0] == 20 * BASE
    assert position(s, alice, 0, ETH)[0] == 80 * BASE
    liquidated = next(e for e in EventDecoder().decode_all(mined.logs) if e.name == "Liquidated")
    assert liquidated.args["isPartial"]


# ------------------------------------------------------------------ the agent


def _params(**kw) -> LiquidatorParams:
    base = {
        "latency_blocks": 0,
        "min_profit_usd": 0.0,
        "opening_bid_wei": 2 * 10**9,
        "bid_increment": 0.125,
        "bid_cap_wei": 500 * 10**9,
        "mode": "takeover",
        "capital_units": 1_000 * USD,
        "unwind_max_trade_units": 10_000 * USD,
        "tip_from_fee_history": True,
    }
    base.update(kw)
    return LiquidatorParams(**base)


def _position(size, basis=0):
    return SimpleNamespace(size_base=size, open_notional_units=basis)


class _View:
    """A minimal AgentView: one market at 2,000 USD, a mirror with two accounts."""

    def __init__(self, me_positions, victim_positions, equity_units=10**9, tip_wei=0):
        risk = [MarketRisk(50_000, 30_000, 15_000, 500_000)]
        self.me = SimpleNamespace(positions=me_positions, owner="0xme", subaccount=0)
        self.victim = SimpleNamespace(
            positions=victim_positions, owner="0xv", subaccount=0, first_liquidatable_block=0
        )
        book = SimpleNamespace(
            risk=risk,
            get=lambda o, s: {"0xme": self.me, "0xv": self.victim}.get(o),
            health=lambda a, p: SimpleNamespace(equity_units=self._equity),
        )
        self._equity = equity_units
        self.chain = SimpleNamespace(
            book=book,
            margin_prices_e8=lambda: [2_000 * PRICE_SCALE],
            venues=[SimpleNamespace(mark_e8=2_000 * PRICE_SCALE)],
        )
        self.step = 5
        self.liquidatable = [self.victim]
        self.mempool = SimpleNamespace(rival_bid_wei=lambda label, me: None)
        self.fees = SimpleNamespace(
            gas_free=False,
            next_base_fee_wei=10**9,
            gas_token_price_usd=lambda: 2_000.0,
            suggested_tip_wei=lambda pct: tip_wei,
        )
        self.pending: tuple = ()

    def own_pending(self):
        return self.pending

    def health_of(self, candidates):
        return [(a, 2_000 * USD) for a in candidates]


def _agent(params) -> Liquidator:
    agent = Liquidator.__new__(Liquidator)
    Liquidator.__init__(agent, SimpleNamespace(register_agent=lambda a: None), "0xme", params)
    return agent


@pytest.fixture
def liquidator(monkeypatch):
    import mesa

    monkeypatch.setattr(mesa.Agent, "__init__", lambda self, model: None)
    return lambda **kw: _agent(_params(**kw))


def _run(agent, view):
    gen = agent.decide(view)
    out, answer = [], None
    while True:
        try:
            intent = gen.send(answer)
        except StopIteration:
            return out
        out.append(intent)
        answer = SimpleNamespace(tx_id="0x01")


def test_the_agent_skips_what_its_capital_cannot_carry(liquidator):
    # 20 ETH at 2,000 needs 2,000 USD of initial margin (x 1.05): 1,000 USD of equity is short
    agent = liquidator()
    view = _View({}, {ETH: _position(20 * BASE)}, equity_units=1_000 * USD)
    assert _run(agent, view) == [] and agent.skipped_no_capital == 1
    view = _View({}, {ETH: _position(5 * BASE)}, equity_units=1_000 * USD)
    intents = _run(agent, view)
    assert len(intents) == 1 and isinstance(intents[0].action, Takeover)
    # its own opposite inventory nets: a 20 ETH short it holds makes the 20 ETH long free to carry
    view = _View({ETH: _position(-20 * BASE)}, {ETH: _position(20 * BASE)}, 1_000 * USD)
    assert isinstance(_run(agent, view)[-1].action, Takeover)


def test_the_opening_bid_follows_congestion(liquidator):
    agent = liquidator()
    view = _View({}, {ETH: _position(BASE)}, tip_wei=7 * 10**9)
    (intent,) = _run(agent, view)
    assert isinstance(intent, Send) and intent.priority_fee_wei == 7 * 10**9
    # a tip above the break-even: skipped as unprofitable
    view = _View({}, {ETH: _position(BASE)}, tip_wei=10**15)
    assert _run(agent, view) == [] and agent.skipped_unprofitable == 1


def test_the_agent_sells_what_it_took_over_and_unwinds_it(liquidator):
    agent = liquidator()
    took = SimpleNamespace(
        name="PositionTakenOver",
        args={"liquidator": "0xme", "market": ETH, "size": 5 * BASE, "quote": 10_000 * USD},
    )
    record = SimpleNamespace(label="liquidate:0xv/0", status=1)
    (sale,) = agent.on_included(record, [took])
    assert sale == ExternalTrade(ETH, -10_000.0, -10_000.0)  # sold at once, forced flow
    # next block: it holds 5 ETH; it unwinds at most 10,000 USD per block on the venue
    view = _View({ETH: _position(5 * BASE, 10_000 * USD)}, {})
    view.liquidatable = []
    (unwind,) = _run(agent, view)
    assert isinstance(unwind.action, Trade) and unwind.label == unwind_label(ETH)
    assert unwind.action.size_base == -5 * BASE and agent.inventory_usd == pytest.approx(10_000)
    traded = SimpleNamespace(
        name="Traded",
        args={"owner": "0xme", "market": ETH, "sizeDelta": -5 * BASE, "quoteDelta": -9_900 * USD},
    )
    (back,) = agent.on_included(SimpleNamespace(label=unwind.label, status=1), [traded])
    assert back == ExternalTrade(ETH, 9_900.0, 0.0)  # the hedge bought back, not forced
    assert agent.unwinds == 1 and agent.takeovers == 1
    # a large position unwinds in slices of at most unwind_max_trade_usd
    view = _View({ETH: _position(50 * BASE)}, {})
    view.liquidatable = []
    (unwind,) = _run(agent, view)
    assert unwind.action.size_base == -5 * BASE


# ------------------------------------------------------------------ in the model


def test_a_takeover_run_end_to_end():
    """A crashy tiny run with liquidators.mode = takeover: takeovers recorded as such, the
    liquidators' capital funded, their inventory sold and unwound, the mirror equal to the
    chain, and the same run in close mode has no takeover."""
    from sim.api import resolve_scenario
    from sim.model import LiqSimModel
    from tests.test_model import CRASHY, TINY

    m = LiqSimModel(resolve_scenario(TINY, [*CRASHY, "liquidators.mode=takeover"]), seed=5)
    m.run()
    tables = m.recorder.tables()
    liq, bots = tables["liquidations"], tables["liquidators"]
    assert (liq["kind"] == "takeover").sum() > 0 and (liq["kind"] == "liquidation").sum() == 0
    assert bots["takeovers"].sum() == (liq["kind"] == "takeover").sum()
    assert bots["hedged_usd"].sum() > 0 and bots["unwinds"].sum() > 0
    assert set(bots["mode"]) == {"takeover"} and (bots["capital_usd"] == 100_000).all()
    ex = m.system.exchange.functions
    prices = m.view.margin_prices_e8()
    for (owner, sub), acct in m.view.book.accounts.items():
        assert ex.getAccount(owner, sub).call()[3] == acct.collateral_units
        assert ex.accountHealth(owner, sub).call()[0] == (
            health_of(acct, prices, m.view.book.risk).equity_units
        )
    for bot in bots["liquidator"]:
        assert m.view.book.get(bot, 0) is not None  # its capital's subaccount
    tx = tables["transactions"]
    assert (tx.loc[tx["label"].str.startswith("unwind:"), "status"] == 1).any()
    assert m.external.impact(0, m.block - 1) != 0.0


def test_close_mode_is_the_default_and_opens_no_liquidator_account():
    from sim.api import resolve_scenario
    from sim.model import LiqSimModel
    from tests.test_model import TINY

    m = LiqSimModel(resolve_scenario(TINY, ["traders.count=2"]), seed=1)
    assert m.scenario.liquidators.mode == "close"
    bots = [a for a in m.by_address.values() if a.kind == "liquidator"]
    assert bots and all(m.view.book.get(b.address, 0) is None for b in bots)
    assert revert_name(b"") == ""
