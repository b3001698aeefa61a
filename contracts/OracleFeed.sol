// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IPriceFeed} from "./interfaces/IPriceFeed.sol";

/// @title OracleFeed
/// @notice One market's on-chain price, written only by authorized reporters, read through a
///         Chainlink-style `latestRoundData()` with 8 decimals. Each report opens a new round stamped
///         with the block time; nothing is interpolated, so the price is as stale as the last report.
contract OracleFeed is IPriceFeed {
    /// @notice The caller is not the feed's owner.
    error NotOwner(address caller);
    /// @notice The caller is not an authorized reporter.
    error NotReporter(address caller);
    /// @notice Answers must be strictly positive.
    error InvalidAnswer(int256 answer);
    /// @notice The requested round does not exist.
    error UnknownRound(uint80 roundId);

    /// @notice A reporter was authorized (`allowed`) or de-authorized.
    event ReporterSet(address indexed reporter, bool allowed);
    /// @notice Chainlink's event for a new answer.
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);

    struct Round {
        int256 answer;
        uint64 updatedAt;
    }

    /// @inheritdoc IPriceFeed
    uint8 public constant decimals = 8;
    /// @notice Human-readable pair name, e.g. "ETH / USD".
    string public description;
    /// @notice The account allowed to manage reporters.
    address public immutable owner;
    /// @notice Whether an address may report.
    mapping(address => bool) public isReporter;
    /// @notice Id of the latest round (0 before the first report).
    uint80 public latestRound;
    mapping(uint80 => Round) private rounds;

    /// @param description_ pair name
    /// @param owner_ manager of the reporter set
    constructor(string memory description_, address owner_) {
        description = description_;
        owner = owner_;
    }

    /// @notice Authorize or de-authorize `reporter`. Owner only.
    /// @param reporter address to change
    /// @param allowed true to authorize
    function setReporter(address reporter, bool allowed) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        isReporter[reporter] = allowed;
        emit ReporterSet(reporter, allowed);
    }

    /// @notice Write a new answer (8 decimals) as a new round stamped with the block time.
    /// @param answer the price, strictly positive
    function report(int256 answer) external {
        if (!isReporter[msg.sender]) revert NotReporter(msg.sender);
        if (answer <= 0) revert InvalidAnswer(answer);
        uint80 roundId = latestRound + 1;
        latestRound = roundId;
        rounds[roundId] = Round({answer: answer, updatedAt: uint64(block.timestamp)});
        emit AnswerUpdated(answer, roundId, block.timestamp);
    }

    /// @inheritdoc IPriceFeed
    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return getRoundData(latestRound);
    }

    /// @notice A past round's data, Chainlink-style.
    /// @param roundId the round to read
    function getRoundData(uint80 roundId)
        public
        view
        returns (uint80, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        Round memory r = rounds[roundId];
        if (r.updatedAt == 0) revert UnknownRound(roundId);
        return (roundId, r.answer, r.updatedAt, r.updatedAt, roundId);
    }
}
