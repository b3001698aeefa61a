"""A web3.py provider on the backend's own JSON-RPC connection.

Contract objects and views (``w3.eth.contract(...).functions.f().call()``, ``w3.eth.get_code``)
go through the same persistent connection as mining, so there is one connection per chain and
no second HTTP stack. Sending transactions and mining through web3 are refused: blocks are
built only by the block builder (``ChainSession.mine``), as on the py-evm backend.
"""

from __future__ import annotations

from typing import Any

from web3 import Web3
from web3.providers.base import BaseProvider

from sim.chain.anvil.rpc import RpcClient
from sim.chain.interface import ZERO_ADDRESS, ChainError

#: Methods that would change the chain behind the block builder's back.
REFUSED = frozenset(
    {
        "eth_sendRawTransaction",
        "eth_sendTransaction",
        "evm_mine",
        "evm_snapshot",
        "evm_revert",
        "evm_increaseTime",
        "evm_setNextBlockTimestamp",
        "anvil_mine",
        "anvil_reset",
        "anvil_rollback",
    }
)


class AnvilProvider(BaseProvider):
    """web3 requests answered by an :class:`RpcClient`."""

    def __init__(self, rpc: RpcClient) -> None:
        super().__init__()
        self._rpc = rpc

    def make_request(self, method: Any, params: Any) -> Any:
        if method == "eth_estimateGas":
            raise ChainError("liqsim never estimates gas: pass an explicit gas limit")
        if method in REFUSED:
            raise ChainError(
                "liqsim mines blocks only through the block builder (ChainSession.mine); "
                f"web3 transaction sending, mining, time travel and snapshots are disabled "
                f"({method})"
            )
        return self._rpc.raw(str(method), list(params))

    def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            self._rpc.request("eth_chainId")
        except ChainError:
            if show_traceback:
                raise
            return False
        return True


def web3_for(rpc: RpcClient) -> Web3:
    w3 = Web3(AnvilProvider(rpc))
    w3.eth.default_account = ZERO_ADDRESS  # "from" of eth_call when none is given
    return w3
