"""Two liquidators race for one account in the same block (a priority gas auction)."""

from __future__ import annotations

from sim.chain.events import EventDecoder
from sim.exchange.client import System, error_decoder
from sim.market.builder import BlockBuilder
from sim.market.mempool import Submission
from sim.units import BASE as ONE
from sim.units import GWEI
from tests.helpers import ETH, open_account, set_market, trader


def _liquidatable_account(system: System) -> str:
    owner = trader(system, 0)
    open_account(system, owner, 0, "isolated", ETH, 250)
    system.send(system.trade_call(owner, 0, ETH, ONE))  # 2,000 notional at 8x
    set_market(system, ETH, 1_800)  # equity ~50 < maintenance ~54
    assert system.health(owner, 0)["liquidatable"]
    return owner


def _bid(system: System, builder: BlockBuilder, liquidator: str, owner: str, tip: int) -> bytes:
    call = system.liquidate_call(liquidator, owner, 0)
    fee_cap = 2 * builder.base_fee_wei() + tip
    signed = system.session.sign(liquidator, call.to, call.data, call.gas, fee_cap, tip)
    builder.submit(Submission(signed, "liquidator", f"liquidate:{owner}/0"))
    return signed.tx_hash


def test_higher_bidder_wins_and_the_loser_reverts_and_pays_gas(liqsim_system: System) -> None:
    system = liqsim_system
    session = system.session
    owner = _liquidatable_account(system)
    slow, fast = trader(system, 8), trader(system, 9)
    builder = BlockBuilder(session, errors=error_decoder())
    slow_eth = session.balance(slow)

    _bid(system, builder, slow, owner, tip=2 * GWEI)  # arrives first, bids less
    _bid(system, builder, fast, owner, tip=5 * GWEI)
    result = builder.build_block()

    winner, loser = result.records
    assert (winner.sender, loser.sender) == (fast, slow)
    assert (winner.index_in_block, loser.index_in_block) == (0, 1)
    assert winner.status == 1
    assert winner.priority_fee_per_gas_wei == 5 * GWEI
    assert (loser.status, loser.failure) == (0, "Revert")
    assert loser.revert_reason == "AccountHealthy"
    assert loser.gas_used > 21_000
    assert loser.fee_paid_wei == loser.gas_used * (result.base_fee_wei + 2 * GWEI)
    assert slow_eth - session.balance(slow) == loser.fee_paid_wei
    assert not system.health(owner, 0)["liquidatable"]

    mined = {tx.sender: tx for tx in result.block.txs}
    events = [e for e in EventDecoder().decode_all(mined[fast].logs) if e.name == "Liquidated"]
    assert [(e.args["owner"], e.args["liquidator"]) for e in events] == [(owner, fast)]
    assert mined[slow].logs == ()
