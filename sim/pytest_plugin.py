"""pytest fixtures for contract developers: a deployed liqsim system on eth-tester/py-evm.

Installed as a pytest plugin (entry point ``liqsim``), so after ``pip install liqsim`` any test
can ask for them::

    def test_my_liquidation(liqsim_system):
        s = liqsim_system
        trader = s.session.accounts[5].address
        s.send_batch(s.fund_trader_calls(trader, 1_000 * 10**6))
        ...

``liqsim_session`` is a fresh :class:`sim.chain.session.ChainSession` (seed 0, 24 funded accounts,
fixed genesis time); ``liqsim_system`` is :func:`sim.exchange.client.deploy_system` on it with the
default two markets (ETH-like and BTC-like). Both are function-scoped: every test starts clean.
"""

from __future__ import annotations

import pytest

from sim.chain.session import ChainSession
from sim.exchange.client import System, deploy_system


@pytest.fixture
def liqsim_session() -> ChainSession:
    """A fresh deterministic chain session (py-evm through eth-tester)."""
    return ChainSession(seed=0, n_accounts=24)


@pytest.fixture
def liqsim_system(liqsim_session: ChainSession) -> System:
    """A deployed default system: token, exchange, two markets with feeds and venues."""
    return deploy_system(liqsim_session)
