// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {MarginExchange} from "../MarginExchange.sol";

/// @title MarginExchangeUncapped
/// @notice Test double: MarginExchange without the auto-deleveraging cap, so that a deleveraging fill
///         can take more than a counterparty's margin allows and the `AdlBrokeInvariant` assertion
///         can be seen to fire. Never deployed by the simulation.
contract MarginExchangeUncapped is MarginExchange {
    /// @param collateralToken_ the settlement token (6 decimals)
    /// @param owner_ market manager
    constructor(IERC20 collateralToken_, address owner_) MarginExchange(collateralToken_, owner_) {}

    function _adlCap(uint256, int256, uint256, uint256, uint256) internal pure override returns (uint256) {
        return type(uint256).max;
    }
}
