"""The EIP-1559 base-fee rule (target = gas limit / 2, at most 1/8 = 12.5% change per block,
integer arithmetic as in the execution specs and py-evm): a protocol rule of the chain."""

ELASTICITY_MULTIPLIER = 2
BASE_FEE_MAX_CHANGE_DENOMINATOR = 8


def next_base_fee_wei(parent_base_fee_wei: int, parent_gas_used: int, parent_gas_limit: int) -> int:
    """EIP-1559 base fee of a block from its parent's base fee, gas used and gas limit."""
    target = parent_gas_limit // ELASTICITY_MULTIPLIER
    if target <= 0:
        raise ValueError(f"gas limit {parent_gas_limit} leaves no gas target")
    if parent_gas_used == target:
        return parent_base_fee_wei
    if parent_gas_used > target:
        delta = parent_base_fee_wei * (parent_gas_used - target) // target
        return parent_base_fee_wei + max(delta // BASE_FEE_MAX_CHANGE_DENOMINATOR, 1)
    delta = parent_base_fee_wei * (target - parent_gas_used) // target
    return max(parent_base_fee_wei - delta // BASE_FEE_MAX_CHANGE_DENOMINATOR, 0)
