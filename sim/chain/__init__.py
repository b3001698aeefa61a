"""Chain layer: the EVM backend (py-evm through eth-tester), the chain session (dev accounts,
signing, nonces, mining), compiled contract artifacts, transaction records and event decoding.
The only layer that knows which EVM runs."""
