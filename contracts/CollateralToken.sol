// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title CollateralToken
/// @notice USDC-like settlement token: OpenZeppelin ERC-20 with 6 decimals, mintable by its owner
///         for simulation set-up. One unit is 1e-6 of a dollar ("collateral units").
contract CollateralToken is ERC20, Ownable {
    /// @param name_ ERC-20 name
    /// @param symbol_ ERC-20 symbol
    /// @param owner_ the only address allowed to mint
    constructor(string memory name_, string memory symbol_, address owner_)
        ERC20(name_, symbol_)
        Ownable(owner_)
    {}

    /// @notice Six decimals, like USDC.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mint `amount` collateral units to `to` (set-up only). Emits ERC-20 `Transfer`.
    /// @param to receiver of the new tokens
    /// @param amount collateral units (1e-6 dollars)
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
