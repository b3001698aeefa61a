// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IPriceVenue} from "./interfaces/IPriceVenue.sol";

/// @title VirtualAmm
/// @notice Reference price venue: a constant-product (x * y = k) virtual AMM over virtual base and
///         quote reserves. No tokens move here; the exchange settles quote amounts in collateral.
///         Buying base raises the price, selling lowers it, so forced liquidation sells move it down.
/// @dev Base reserve: 18 decimals. Quote reserve: collateral units (6 decimals).
///      The new quote reserve is always rounded up (k never shrinks), so a buyer pays at least and a
///      seller receives at most the exact constant-product amount: rounding is against the trader.
contract VirtualAmm is IPriceVenue {
    /// @notice Only the exchange trades on this venue.
    error NotExchange(address caller);
    /// @notice A buy would take the whole base reserve.
    error InsufficientLiquidity(uint256 baseOut, uint256 baseReserve);
    /// @notice Trades of zero base are refused.
    error ZeroTrade();
    /// @notice Reserves must be non-zero.
    error InvalidReserves();

    /// @notice A trade executed: signed base and quote from the trader's side, and the new reserves.
    event Swap(int256 baseDelta, int256 quoteDelta, uint256 baseReserve, uint256 quoteReserve);

    /// @notice The margin exchange allowed to trade.
    address public immutable exchange;
    /// @notice Virtual base reserve (18 decimals).
    uint256 public baseReserve;
    /// @notice Virtual quote reserve (collateral units).
    uint256 public quoteReserve;

    /// @param exchange_ the only caller of `swap`
    /// @param baseReserve_ initial virtual base reserve (18 decimals)
    /// @param quoteReserve_ initial virtual quote reserve (collateral units); price = quote / base
    constructor(address exchange_, uint256 baseReserve_, uint256 quoteReserve_) {
        if (baseReserve_ == 0 || quoteReserve_ == 0) revert InvalidReserves();
        exchange = exchange_;
        baseReserve = baseReserve_;
        quoteReserve = quoteReserve_;
    }

    /// @inheritdoc IPriceVenue
    function swap(int256 baseDelta) external returns (int256 quoteDelta) {
        if (msg.sender != exchange) revert NotExchange(msg.sender);
        uint256 newBase;
        uint256 newQuote;
        (quoteDelta, newBase, newQuote) = _quote(baseDelta);
        baseReserve = newBase;
        quoteReserve = newQuote;
        emit Swap(baseDelta, quoteDelta, newBase, newQuote);
    }

    /// @inheritdoc IPriceVenue
    function quoteSwap(int256 baseDelta) external view returns (int256 quoteDelta) {
        (quoteDelta,,) = _quote(baseDelta);
    }

    /// @inheritdoc IPriceVenue
    function markPriceE8() external view returns (uint256) {
        // quote units (1e6) per base (1e18) -> price with 8 decimals: quote * 1e20 / base
        return quoteReserve * 1e20 / baseReserve;
    }

    function _quote(int256 baseDelta) private view returns (int256 quoteDelta, uint256 newBase, uint256 newQuote) {
        if (baseDelta == 0) revert ZeroTrade();
        uint256 k = baseReserve * quoteReserve;
        if (baseDelta > 0) {
            uint256 out = uint256(baseDelta);
            if (out >= baseReserve) revert InsufficientLiquidity(out, baseReserve);
            newBase = baseReserve - out;
            newQuote = _ceilDiv(k, newBase);
            quoteDelta = int256(newQuote - quoteReserve); // paid by the buyer, rounded up
        } else {
            newBase = baseReserve + uint256(-baseDelta);
            newQuote = _ceilDiv(k, newBase);
            quoteDelta = -int256(quoteReserve - newQuote); // received by the seller, rounded down
        }
    }

    function _ceilDiv(uint256 a, uint256 b) private pure returns (uint256) {
        return a == 0 ? 0 : (a - 1) / b + 1;
    }
}
