// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IPriceVenue
/// @notice Where a market's trades and liquidations execute. The exchange is the venue's only
///         trader; a venue turns a signed base amount into a signed quote amount with price impact.
/// @dev Units: base amounts have 18 decimals, quote amounts are collateral units (6 decimals),
///      prices have 8 decimals. Rounding is always against the trader.
interface IPriceVenue {
    /// @notice Execute a trade of `baseDelta` (+ buys base, - sells base).
    /// @return quoteDelta quote paid by the trader (+) or received by the trader (-)
    function swap(int256 baseDelta) external returns (int256 quoteDelta);

    /// @notice The quote amount `swap(baseDelta)` would return now, without trading.
    function quoteSwap(int256 baseDelta) external view returns (int256 quoteDelta);

    /// @notice The venue's marginal (mark) price, 8 decimals.
    function markPriceE8() external view returns (uint256);

    /// @notice The one exchange allowed to trade (checked when the exchange lists the venue).
    function exchange() external view returns (address);
}
