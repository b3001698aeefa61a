// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IPriceFeed
/// @notice The read side of a Chainlink AggregatorV3-style price feed.
interface IPriceFeed {
    /// @notice Number of decimals of `answer` (8 for USD pairs).
    function decimals() external view returns (uint8);

    /// @notice The latest round: its id, the answer, when it started and was updated, and the
    ///         round in which the answer was computed (equal to `roundId` here).
    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
}
