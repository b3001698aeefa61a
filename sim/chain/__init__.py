"""Chain layer: the EVM backends (py-evm through eth-tester, the default; a local anvil process),
the chain session (dev accounts, signing, nonces, mining), compiled contract artifacts,
transaction records and event decoding. The only layer that knows which EVM runs."""
