"""Block-space market: the mempool, the block builder (the only code that hands transactions
to the chain), the EIP-1559 fee market and background demand for block space."""
