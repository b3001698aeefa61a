// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IPriceFeed} from "../interfaces/IPriceFeed.sol";

/// @title MockPriceFeed
/// @notice Test double of a Chainlink-style feed whose answer and timestamp anyone can set,
///         including values a real feed would refuse (zero, negative, far in the past).
contract MockPriceFeed is IPriceFeed {
    /// @notice The answer or timestamp was overwritten.
    event MockAnswerSet(int256 answer, uint256 updatedAt);

    /// @inheritdoc IPriceFeed
    uint8 public constant decimals = 8;
    int256 private answer_;
    uint256 private updatedAt_;
    uint80 private round_;

    /// @notice Set the answer and its timestamp (no checks: this is a test double).
    /// @param answer new answer, 8 decimals
    /// @param updatedAt its timestamp
    function set(int256 answer, uint256 updatedAt) external {
        answer_ = answer;
        updatedAt_ = updatedAt;
        round_ += 1;
        emit MockAnswerSet(answer, updatedAt);
    }

    /// @inheritdoc IPriceFeed
    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        return (round_, answer_, updatedAt_, updatedAt_, round_);
    }
}
