// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IPriceFeed} from "./interfaces/IPriceFeed.sol";
import {IPriceVenue} from "./interfaces/IPriceVenue.sol";
import {MarginMath} from "./MarginMath.sol";

/// @title MarginExchange
/// @notice Perpetual futures settled in one collateral token, with CROSS and ISOLATED subaccounts,
///         oracle-priced margin checks and permissionless liquidation.
/// @dev Units: collateral and quote amounts in collateral units (6 decimals), position sizes in base
///      units (18 decimals), prices with 8 decimals, fractions in parts per million (ppm).
///      Every rounding is against the account and in favour of solvency: position values round
///      down, requirements, fees and funding owed round up.
///
///      Each entry point follows one shape (as in dYdX's perpetual contracts): load the context
///      (accrue funding of the markets touched), settle the account (apply funding owed), mutate,
///      then check the final margin with one shared function (`_health`).
///
///      Token conservation: the exchange's token balance always equals
///      totalCollateral + insuranceFund + counterpartyFund. The counterparty fund is the liquidity
///      behind the virtual AMMs: it pays traders' realized profit and funding and receives their
///      realized losses, and it absorbs bad debt that the insurance fund cannot cover.
///
///      Liquidation is full (close factor 100%): every position of the account is closed on the
///      venue in one transaction. This matches the one-shot liquidations most DeFi perps ran in the
///      documented crashes and keeps a liquidation's price impact in one block.
contract MarginExchange {
    using SafeERC20 for IERC20;
    using MarginMath for int256;

    // ------------------------------------------------------------------ types

    /// @notice How a subaccount's collateral is shared.
    enum MarginMode {
        NONE,
        CROSS,
        ISOLATED
    }

    /// @notice Which price margin checks use.
    enum PriceSource {
        INDEX,
        MARK
    }

    /// @notice Per-market risk parameters (fractions in ppm).
    struct MarketParams {
        uint32 initialMarginPpm;
        uint32 maintenanceMarginPpm;
        uint32 liquidationPenaltyPpm; // of the notional closed, paid from the account's equity
        uint32 liquidatorSharePpm; // share of the penalty to the liquidator; the rest to insurance
        uint32 maxOracleAgeS; // 0 = the oracle's age is not checked
        PriceSource marginPrice;
        uint32 fundingPeriodS; // 0 = no funding
        uint32 fundingCapPpm; // cap on |mark - index| / index per funding period
    }

    struct Market {
        IPriceFeed feed;
        IPriceVenue venue;
        MarketParams params;
        int256 fundingIndex; // cumulative funding, quote units * 1e18 per whole base unit
        uint64 lastFundingTime;
    }

    /// @notice A position: signed size and signed cost basis (long > 0).
    struct Position {
        int256 sizeBase;
        int256 openNotional; // quote units paid (+) or received (-) to open
        int256 lastFundingIndex;
    }

    struct Account {
        MarginMode mode;
        uint32 isolatedMarket;
        uint256 marketMask; // bit m set = open position in market m
        int256 collateral; // collateral units; negative only after realized losses beyond it
    }

    /// @notice An account's health at the margin prices.
    struct Health {
        int256 equity; // collateral + unrealized PnL - funding owed
        uint256 initialRequirement;
        uint256 maintenanceRequirement;
        uint256 notional; // sum of |size| * price
        bool liquidatable; // equity < maintenanceRequirement
    }

    // ---------------------------------------------------------------- errors

    /// @notice The caller is not the exchange owner.
    error NotOwner(address caller);
    /// @notice Market id out of range.
    error UnknownMarket(uint256 market);
    /// @notice The (owner, subaccount) pair was never opened.
    error UnknownSubaccount(address owner, uint32 subaccount);
    /// @notice The subaccount is already open.
    error SubaccountExists(address owner, uint32 subaccount);
    /// @notice The owner already has the maximum number of subaccounts.
    error TooManySubaccounts(address owner, uint256 limit);
    /// @notice The margin mode is NONE, or the operation does not fit the account's mode.
    error WrongMarginMode(MarginMode mode, uint256 market);
    /// @notice Amount or size of zero.
    error ZeroAmount();
    /// @notice A transfer to the same subaccount.
    error SameSubaccount();
    /// @notice A withdrawal or transfer larger than the free collateral balance.
    error InsufficientCollateral(int256 available, uint256 requested);
    /// @notice Equity below the initial-margin requirement after a risk-increasing action.
    error InsufficientMargin(int256 equity, uint256 initialRequirement);
    /// @notice Liquidation of an account whose equity covers its maintenance requirement.
    error AccountHealthy(int256 equity, uint256 maintenanceRequirement);
    /// @notice Average execution price worse than the trader's limit.
    error SlippageExceeded(uint256 averagePriceE8, uint256 limitPriceE8);
    /// @notice The oracle answer is older than the market's maximum age.
    error StalePrice(uint256 market, uint256 updatedAt, uint256 blockTime);
    /// @notice The oracle answer is not positive.
    error InvalidOraclePrice(uint256 market, int256 answer);
    /// @notice Market parameters out of range (`code` names the check; see `_validate`).
    error InvalidMarketParams(uint8 code);
    /// @notice No more markets can be added.
    error TooManyMarkets(uint256 limit);
    /// @notice Batch arrays of different lengths.
    error LengthMismatch(uint256 owners, uint256 subaccounts);

    // ---------------------------------------------------------------- events

    /// @notice A market was listed.
    event MarketAdded(uint256 indexed market, address feed, address venue, MarketParams params);
    /// @notice A market's parameters changed.
    event MarketParamsUpdated(uint256 indexed market, MarketParams params);
    /// @notice A market's funding index moved.
    event FundingAccrued(uint256 indexed market, int256 fundingIndex, int256 premiumPpm, uint256 timestamp);
    /// @notice Funding owed by (+) or to (-) an account's position was settled.
    event FundingSettled(address indexed owner, uint32 indexed subaccount, uint256 indexed market, int256 payment);
    /// @notice A subaccount was opened.
    event SubaccountOpened(address indexed owner, uint32 indexed subaccount, MarginMode mode, uint32 isolatedMarket);
    /// @notice Collateral deposited into a subaccount.
    event Deposited(address indexed owner, uint32 indexed subaccount, uint256 amount);
    /// @notice Collateral withdrawn from a subaccount.
    event Withdrawn(address indexed owner, uint32 indexed subaccount, uint256 amount);
    /// @notice Collateral moved between two subaccounts of one owner.
    event CollateralTransferred(address indexed owner, uint32 fromSubaccount, uint32 toSubaccount, uint256 amount);
    /// @notice A trade executed on the market's venue.
    event Traded(
        address indexed owner,
        uint32 indexed subaccount,
        uint256 indexed market,
        int256 sizeDelta,
        int256 quoteDelta,
        int256 newSize,
        int256 newOpenNotional,
        int256 realizedPnl
    );
    /// @notice One position closed by a liquidation.
    event PositionLiquidated(
        address indexed owner,
        uint32 indexed subaccount,
        uint256 indexed market,
        int256 sizeClosed,
        int256 quoteDelta,
        int256 realizedPnl
    );
    /// @notice An account was liquidated.
    event Liquidated(
        address indexed owner,
        uint32 indexed subaccount,
        address indexed liquidator,
        uint256 notionalClosed,
        uint256 penaltyPaid,
        uint256 liquidatorReward,
        uint256 insuranceShare,
        uint256 insuranceCover,
        uint256 badDebt
    );
    /// @notice Negative equity the insurance fund could not cover (socialized to the counterparty fund).
    event BadDebtRecorded(address indexed owner, uint32 indexed subaccount, uint256 amount, uint256 totalBadDebt);
    /// @notice The insurance fund was topped up.
    event InsuranceDeposited(address indexed from, uint256 amount, uint256 insuranceFund);
    /// @notice The counterparty (virtual AMM liquidity) fund was topped up.
    event CounterpartyFunded(address indexed from, uint256 amount, int256 counterpartyFund);

    // ----------------------------------------------------------------- state

    /// @notice At most this many markets (positions are tracked in a 32-bit mask).
    uint256 public constant MAX_MARKETS = 32;
    /// @notice At most this many subaccounts per owner.
    uint256 public constant MAX_SUBACCOUNTS = 16;

    /// @notice The settlement token.
    IERC20 public immutable collateralToken;
    /// @notice The account allowed to list markets and change their parameters.
    address public immutable owner;

    Market[] private markets;
    mapping(bytes32 => Account) private accounts;
    mapping(bytes32 => mapping(uint256 => Position)) private positions;

    /// @notice Number of subaccounts each owner has opened.
    mapping(address => uint256) public subaccountCount;
    /// @notice Sum of all accounts' collateral (collateral units).
    int256 public totalCollateral;
    /// @notice Insurance fund (collateral units).
    uint256 public insuranceFund;
    /// @notice Liquidity behind the venues (collateral units); see the contract notes.
    int256 public counterpartyFund;
    /// @notice Cumulative bad debt (collateral units).
    uint256 public totalBadDebt;

    /// @param collateralToken_ the settlement token (6 decimals)
    /// @param owner_ market manager
    constructor(IERC20 collateralToken_, address owner_) {
        collateralToken = collateralToken_;
        owner = owner_;
    }

    // ------------------------------------------------------------ governance

    /// @notice List a market. Owner only.
    /// @param feed the market's oracle (8 decimals)
    /// @param venue the market's price venue (the exchange must be its only trader)
    /// @param params risk parameters, validated
    /// @return market the new market id
    function addMarket(IPriceFeed feed, IPriceVenue venue, MarketParams calldata params)
        external
        returns (uint256 market)
    {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        if (markets.length >= MAX_MARKETS) revert TooManyMarkets(MAX_MARKETS);
        _validate(params);
        market = markets.length;
        markets.push(
            Market({
                feed: feed,
                venue: venue,
                params: params,
                fundingIndex: 0,
                lastFundingTime: uint64(block.timestamp)
            })
        );
        emit MarketAdded(market, address(feed), address(venue), params);
    }

    /// @notice Change a market's risk parameters (funding accrues at the old ones first). Owner only.
    /// @param market market id
    /// @param params new parameters, validated
    function setMarketParams(uint256 market, MarketParams calldata params) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _requireMarket(market);
        _validate(params);
        _accrueFunding(market);
        markets[market].params = params;
        emit MarketParamsUpdated(market, params);
    }

    /// @notice Add `amount` collateral units to the insurance fund (anyone).
    /// @param amount collateral units, pulled from the caller
    function depositInsurance(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        insuranceFund += amount;
        emit InsuranceDeposited(msg.sender, amount, insuranceFund);
        collateralToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Add `amount` collateral units to the counterparty fund behind the venues (anyone).
    /// @param amount collateral units, pulled from the caller
    function fundCounterparty(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        counterpartyFund += int256(amount);
        emit CounterpartyFunded(msg.sender, amount, counterpartyFund);
        collateralToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    // ------------------------------------------------------------- accounts

    /// @notice Open subaccount `subaccount` of the caller in `mode`. ISOLATED subaccounts trade only
    ///         `isolatedMarket`; for CROSS it is ignored.
    /// @param subaccount caller-chosen id
    /// @param mode CROSS or ISOLATED
    /// @param isolatedMarket the one market of an ISOLATED subaccount
    function openSubaccount(uint32 subaccount, MarginMode mode, uint32 isolatedMarket) external {
        bytes32 key = _key(msg.sender, subaccount);
        if (accounts[key].mode != MarginMode.NONE) revert SubaccountExists(msg.sender, subaccount);
        if (mode == MarginMode.NONE) revert WrongMarginMode(mode, isolatedMarket);
        if (mode == MarginMode.ISOLATED) _requireMarket(isolatedMarket);
        else isolatedMarket = 0;
        if (subaccountCount[msg.sender] >= MAX_SUBACCOUNTS) {
            revert TooManySubaccounts(msg.sender, MAX_SUBACCOUNTS);
        }
        subaccountCount[msg.sender] += 1;
        accounts[key].mode = mode;
        accounts[key].isolatedMarket = isolatedMarket;
        emit SubaccountOpened(msg.sender, subaccount, mode, isolatedMarket);
    }

    /// @notice Deposit `amount` collateral units into the caller's subaccount.
    /// @param subaccount the caller's subaccount
    /// @param amount collateral units, pulled from the caller (needs an ERC-20 allowance)
    function deposit(uint32 subaccount, uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        bytes32 key = _existing(msg.sender, subaccount);
        _changeCollateral(key, int256(amount));
        emit Deposited(msg.sender, subaccount, amount);
        collateralToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Withdraw `amount` collateral units. Only collateral (not unrealized profit) can leave,
    ///         and the account must still meet its initial-margin requirement afterwards.
    /// @param subaccount the caller's subaccount
    /// @param amount collateral units sent to the caller
    function withdraw(uint32 subaccount, uint256 amount) external {
        bytes32 key = _existing(msg.sender, subaccount);
        _debitCollateral(msg.sender, subaccount, key, amount);
        emit Withdrawn(msg.sender, subaccount, amount);
        collateralToken.safeTransfer(msg.sender, amount);
    }

    /// @notice Move collateral between two of the caller's subaccounts (the source must still meet
    ///         its initial-margin requirement afterwards).
    /// @param fromSubaccount source subaccount
    /// @param toSubaccount destination subaccount (must be open)
    /// @param amount collateral units
    function transferCollateral(uint32 fromSubaccount, uint32 toSubaccount, uint256 amount) external {
        if (fromSubaccount == toSubaccount) revert SameSubaccount();
        bytes32 fromKey = _existing(msg.sender, fromSubaccount);
        bytes32 toKey = _existing(msg.sender, toSubaccount);
        _debitCollateral(msg.sender, fromSubaccount, fromKey, amount);
        _changeCollateral(toKey, int256(amount));
        emit CollateralTransferred(msg.sender, fromSubaccount, toSubaccount, amount);
    }

    // ---------------------------------------------------------------- trading

    /// @notice Trade `sizeDelta` base units (+ buy, - sell) of `market` on its venue. The trade may
    ///         increase, reduce or flip the position. A risk-increasing trade (the position grows or
    ///         flips) must leave the account at or above its initial-margin requirement; a reducing
    ///         trade is always allowed.
    /// @param subaccount the caller's subaccount
    /// @param market market id
    /// @param sizeDelta base units, 18 decimals
    /// @param limitPriceE8 worst acceptable average price: a maximum for buys, a minimum for sells
    function trade(uint32 subaccount, uint256 market, int256 sizeDelta, uint256 limitPriceE8) external {
        if (sizeDelta == 0) revert ZeroAmount();
        bytes32 key = _existing(msg.sender, subaccount);
        _requireMarket(market);
        Account storage a = accounts[key];
        if (a.mode == MarginMode.ISOLATED && a.isolatedMarket != market) {
            revert WrongMarginMode(a.mode, market);
        }
        _accrueFunding(market);
        _settleAccount(msg.sender, subaccount, key);

        int256 quoteDelta = markets[market].venue.swap(sizeDelta);
        _checkLimit(sizeDelta, quoteDelta, limitPriceE8);
        Position storage p = positions[key][market];
        int256 oldSize = p.sizeBase;
        if (oldSize == 0) p.lastFundingIndex = markets[market].fundingIndex;
        int256 realized = _applyFill(p, sizeDelta, quoteDelta);
        _setMarketBit(a, market, p.sizeBase != 0);
        if (p.sizeBase == 0) delete positions[key][market];
        if (realized != 0) _realize(key, realized);
        emit Traded(msg.sender, subaccount, market, sizeDelta, quoteDelta, p.sizeBase, p.openNotional, realized);

        int256 newSize = oldSize + sizeDelta;
        bool flipped = oldSize != 0 && newSize != 0 && (oldSize > 0) != (newSize > 0);
        bool riskIncreasing = flipped || MarginMath.abs(newSize) > MarginMath.abs(oldSize);
        if (riskIncreasing) _requireInitialMargin(key);
    }

    // ------------------------------------------------------------ liquidation

    /// @notice Liquidate an account whose equity is below its maintenance requirement: close all of
    ///         its positions on the venues, pay the penalty from what equity is left (liquidator share
    ///         to the caller, the rest to the insurance fund), cover negative equity from the
    ///         insurance fund and record bad debt for what the fund cannot cover.
    /// @param accountOwner owner of the account
    /// @param subaccount its subaccount id
    function liquidate(address accountOwner, uint32 subaccount) external {
        bytes32 key = _existing(accountOwner, subaccount);
        _settleAccount(accountOwner, subaccount, key);
        Health memory h = _health(key, true);
        if (!h.liquidatable) revert AccountHealthy(h.equity, h.maintenanceRequirement);

        (int256 realized, uint256 notionalClosed, uint256 penalty, uint256 liquidatorPart) =
            _closeAll(accountOwner, subaccount, key);
        if (realized != 0) _realize(key, realized);

        Account storage a = accounts[key];
        int256 equity = a.collateral;
        uint256 penaltyPaid;
        uint256 reward;
        uint256 cover;
        uint256 bad;
        if (equity > 0) {
            penaltyPaid = penalty < uint256(equity) ? penalty : uint256(equity);
            // liquidator's pro-rata part of what was actually paid, rounded down; the rest insures
            reward = penalty == 0 ? 0 : liquidatorPart * penaltyPaid / penalty;
            _changeCollateral(key, -int256(penaltyPaid));
            insuranceFund += penaltyPaid - reward;
        } else if (equity < 0) {
            uint256 deficit = uint256(-equity);
            cover = deficit < insuranceFund ? deficit : insuranceFund;
            bad = deficit - cover;
            insuranceFund -= cover;
            counterpartyFund -= int256(bad);
            totalBadDebt += bad;
            _changeCollateral(key, int256(deficit));
            if (bad != 0) emit BadDebtRecorded(accountOwner, subaccount, bad, totalBadDebt);
        }
        emit Liquidated(
            accountOwner, subaccount, msg.sender, notionalClosed, penaltyPaid, reward, penaltyPaid - reward, cover, bad
        );
        if (reward != 0) collateralToken.safeTransfer(msg.sender, reward);
    }

    // ------------------------------------------------------------------ views

    /// @notice Number of listed markets.
    function marketCount() external view returns (uint256) {
        return markets.length;
    }

    /// @notice A market's feed, venue, parameters and funding state.
    /// @param market market id
    function getMarket(uint256 market) external view returns (Market memory) {
        _requireMarket(market);
        return markets[market];
    }

    /// @notice A subaccount's mode, isolated market, collateral and open-market mask.
    /// @param accountOwner owner
    /// @param subaccount subaccount id
    function getAccount(address accountOwner, uint32 subaccount) external view returns (Account memory) {
        return accounts[_key(accountOwner, subaccount)];
    }

    /// @notice A subaccount's position in `market` (zero if none).
    /// @param accountOwner owner
    /// @param subaccount subaccount id
    /// @param market market id
    function getPosition(address accountOwner, uint32 subaccount, uint256 market)
        external
        view
        returns (Position memory)
    {
        return positions[_key(accountOwner, subaccount)][market];
    }

    /// @notice Health of one account at current margin prices (funding accrued to now, oracle age
    ///         not enforced so that views never revert).
    /// @param accountOwner owner
    /// @param subaccount subaccount id
    function accountHealth(address accountOwner, uint32 subaccount) public view returns (Health memory) {
        return _health(_key(accountOwner, subaccount), false);
    }

    /// @notice Health of many accounts in one call (for liquidators).
    /// @param owners account owners
    /// @param subaccounts subaccount ids, same length as `owners`
    function healthOf(address[] calldata owners, uint32[] calldata subaccounts)
        external
        view
        returns (Health[] memory out)
    {
        if (owners.length != subaccounts.length) revert LengthMismatch(owners.length, subaccounts.length);
        out = new Health[](owners.length);
        for (uint256 i = 0; i < owners.length; ++i) {
            out[i] = _health(_key(owners[i], subaccounts[i]), false);
        }
    }

    /// @notice The price of `market` at which the account's equity equals its maintenance
    ///         requirement, other markets' prices held fixed (exact for ISOLATED accounts). Zero if the
    ///         account has no position in `market` or no positive such price exists. Funding ignored.
    ///         Truncated toward the current price (conservative).
    /// @param accountOwner owner
    /// @param subaccount subaccount id
    /// @param market market id
    function liquidationPriceE8(address accountOwner, uint32 subaccount, uint256 market)
        external
        view
        returns (uint256)
    {
        bytes32 key = _key(accountOwner, subaccount);
        int256 size = positions[key][market].sizeBase;
        if (size == 0) return 0;
        Health memory h = _health(key, false);
        int256 p0 = int256(_marginPrice(market, false));
        int256 mm = int256(uint256(markets[market].params.maintenanceMarginPpm));
        // E(p) = E0 + s (p - p0) / 1e20 ; MM(p) = MM0 + |s| (p - p0) mm / (1e20 PPM)
        // => p = p0 + (MM0 - E0) * 1e20 * PPM / (s * PPM - |s| * mm)
        int256 denom = size * int256(MarginMath.PPM) - int256(MarginMath.abs(size)) * mm;
        int256 gap = int256(h.maintenanceRequirement) - h.equity;
        int256 p = p0 + gap * int256(MarginMath.VALUE_SCALE) * int256(MarginMath.PPM) / denom;
        return p > 0 ? uint256(p) : 0;
    }

    /// @notice The oracle (index) price of `market`, 8 decimals, without the age check.
    /// @param market market id
    function indexPriceE8(uint256 market) external view returns (uint256) {
        return _indexPrice(market, false);
    }

    /// @notice The price margin checks of `market` use now, 8 decimals, without the age check.
    /// @param market market id
    function marginPriceE8(uint256 market) external view returns (uint256) {
        return _marginPrice(market, false);
    }

    // --------------------------------------------------------------- internal

    function _key(address accountOwner, uint32 subaccount) internal pure returns (bytes32) {
        return keccak256(abi.encode(accountOwner, subaccount));
    }

    function _existing(address accountOwner, uint32 subaccount) internal view returns (bytes32 key) {
        key = _key(accountOwner, subaccount);
        if (accounts[key].mode == MarginMode.NONE) revert UnknownSubaccount(accountOwner, subaccount);
    }

    function _requireMarket(uint256 market) internal view {
        if (market >= markets.length) revert UnknownMarket(market);
    }

    /// @dev Codes: 1 maintenance zero or not below initial, 2 initial above 100%, 3 penalty above
    ///      100%, 4 liquidator share above 100%, 5 funding cap without a funding period.
    function _validate(MarketParams calldata p) internal pure {
        if (p.maintenanceMarginPpm == 0 || p.maintenanceMarginPpm >= p.initialMarginPpm) {
            revert InvalidMarketParams(1);
        }
        if (p.initialMarginPpm > MarginMath.PPM) revert InvalidMarketParams(2);
        if (p.liquidationPenaltyPpm > MarginMath.PPM) revert InvalidMarketParams(3);
        if (p.liquidatorSharePpm > MarginMath.PPM) revert InvalidMarketParams(4);
        if (p.fundingCapPpm != 0 && p.fundingPeriodS == 0) revert InvalidMarketParams(5);
    }

    function _indexPrice(uint256 market, bool enforceAge) internal view returns (uint256) {
        Market storage m = markets[market];
        (, int256 answer,, uint256 updatedAt,) = m.feed.latestRoundData();
        if (answer <= 0) revert InvalidOraclePrice(market, answer);
        uint256 maxAge = m.params.maxOracleAgeS;
        if (enforceAge && maxAge != 0 && block.timestamp > updatedAt + maxAge) {
            revert StalePrice(market, updatedAt, block.timestamp);
        }
        return uint256(answer);
    }

    function _marginPrice(uint256 market, bool enforceAge) internal view returns (uint256) {
        if (markets[market].params.marginPrice == PriceSource.MARK) return markets[market].venue.markPriceE8();
        return _indexPrice(market, enforceAge);
    }

    /// @dev Funding index now, without writing it: the premium (mark - index) / index, capped, accrues
    ///      linearly over the funding period. Longs pay when the mark is above the index.
    function _fundingIndexNow(uint256 market) internal view returns (int256 index, int256 premiumPpm) {
        Market storage m = markets[market];
        index = m.fundingIndex;
        uint256 period = m.params.fundingPeriodS;
        uint256 dt = block.timestamp - m.lastFundingTime;
        if (period == 0 || dt == 0) return (index, 0);
        uint256 indexPrice = _indexPrice(market, false);
        int256 mark = int256(m.venue.markPriceE8());
        premiumPpm = (mark - int256(indexPrice)) * int256(MarginMath.PPM) / int256(indexPrice);
        int256 cap = int256(uint256(m.params.fundingCapPpm));
        if (cap != 0 && premiumPpm > cap) premiumPpm = cap;
        if (cap != 0 && premiumPpm < -cap) premiumPpm = -cap;
        // quote units * 1e18 per whole base: priceE8 / 100 * 1e18 * premium / 1e6 = priceE8 * premium * 1e10
        index += int256(indexPrice) * premiumPpm * 1e10 * int256(dt) / int256(period);
    }

    function _accrueFunding(uint256 market) internal {
        Market storage m = markets[market];
        if (m.lastFundingTime == block.timestamp) return;
        (int256 index, int256 premiumPpm) = _fundingIndexNow(market);
        m.lastFundingTime = uint64(block.timestamp);
        if (index != m.fundingIndex) {
            m.fundingIndex = index;
            emit FundingAccrued(market, index, premiumPpm, block.timestamp);
        }
    }

    /// @dev Funding owed by a position since its last settlement (quote units; positive = the account
    ///      pays). Rounded toward +infinity: against the account whichever side pays.
    function _fundingOwed(Position storage p, int256 index) internal view returns (int256) {
        int256 change = index - p.lastFundingIndex;
        if (change == 0 || p.sizeBase == 0) return 0;
        return MarginMath.ceilDivSigned(p.sizeBase * change, 1e36);
    }

    /// @dev Accrue funding on every market the account holds and apply what it owes.
    function _settleAccount(address accountOwner, uint32 subaccount, bytes32 key) internal {
        uint256 mask = accounts[key].marketMask;
        for (uint256 market = 0; mask != 0; ++market) {
            if (mask & 1 == 1) {
                _accrueFunding(market);
                Position storage p = positions[key][market];
                int256 index = markets[market].fundingIndex;
                int256 owed = _fundingOwed(p, index);
                p.lastFundingIndex = index;
                if (owed != 0) {
                    _realize(key, -owed);
                    emit FundingSettled(accountOwner, subaccount, market, owed);
                }
            }
            mask >>= 1;
        }
    }

    /// @dev The one shared margin function: equity and requirements at the margin prices.
    function _health(bytes32 key, bool enforceAge) internal view returns (Health memory h) {
        Account storage a = accounts[key];
        h.equity = a.collateral;
        uint256 mask = a.marketMask;
        for (uint256 market = 0; mask != 0; ++market) {
            if (mask & 1 == 1) {
                Position storage p = positions[key][market];
                MarketParams storage params = markets[market].params;
                uint256 price = _marginPrice(market, enforceAge);
                (int256 index,) = _fundingIndexNow(market);
                h.equity += p.sizeBase.value(price) - p.openNotional - _fundingOwed(p, index);
                uint256 n = MarginMath.notional(p.sizeBase, price);
                h.notional += n;
                h.initialRequirement += MarginMath.mulDivCeil(n, params.initialMarginPpm, MarginMath.PPM);
                h.maintenanceRequirement += MarginMath.mulDivCeil(n, params.maintenanceMarginPpm, MarginMath.PPM);
            }
            mask >>= 1;
        }
        h.liquidatable = h.equity < int256(h.maintenanceRequirement);
    }

    function _requireInitialMargin(bytes32 key) internal view {
        Health memory h = _health(key, true);
        if (h.equity < int256(h.initialRequirement)) revert InsufficientMargin(h.equity, h.initialRequirement);
    }

    /// @dev Settle, then take `amount` of collateral out of an account that must keep initial margin.
    function _debitCollateral(address accountOwner, uint32 subaccount, bytes32 key, uint256 amount) internal {
        if (amount == 0) revert ZeroAmount();
        _settleAccount(accountOwner, subaccount, key);
        Account storage a = accounts[key];
        if (a.collateral < int256(amount)) revert InsufficientCollateral(a.collateral, amount);
        _changeCollateral(key, -int256(amount));
        if (a.marketMask != 0) _requireInitialMargin(key);
    }

    function _changeCollateral(bytes32 key, int256 delta) internal {
        accounts[key].collateral += delta;
        totalCollateral += delta;
    }

    /// @dev Realized PnL (or funding) moves between the account and the counterparty fund.
    function _realize(bytes32 key, int256 pnl) internal {
        _changeCollateral(key, pnl);
        counterpartyFund -= pnl;
    }

    function _setMarketBit(Account storage a, uint256 market, bool open) internal {
        if (open) a.marketMask |= (uint256(1) << market);
        else a.marketMask &= ~(uint256(1) << market);
    }

    /// @dev The average price |quote| / |size| must not be worse than the limit: rounded up for buys
    ///      and down for sells, which is exact against an integer limit (no overflow for any limit).
    function _checkLimit(int256 sizeDelta, int256 quoteDelta, uint256 limitPriceE8) internal pure {
        uint256 size = MarginMath.abs(sizeDelta);
        uint256 scaledQuote = MarginMath.abs(quoteDelta) * MarginMath.VALUE_SCALE;
        if (sizeDelta > 0) {
            uint256 average = MarginMath.mulDivCeil(scaledQuote, 1, size);
            if (average > limitPriceE8) revert SlippageExceeded(average, limitPriceE8);
        } else {
            uint256 average = scaledQuote / size;
            if (average < limitPriceE8) revert SlippageExceeded(average, limitPriceE8);
        }
    }

    /// @dev Apply a fill to a position; returns the PnL realized by the reducing part. On a reduce or
    ///      flip the closed share of the cost basis is rounded up (toward +inf, against the account) and
    ///      the quote of a flip is split pro rata between its closing and opening parts.
    function _applyFill(Position storage p, int256 sizeDelta, int256 quoteDelta) internal returns (int256 realized) {
        int256 oldSize = p.sizeBase;
        if (oldSize == 0 || (oldSize > 0) == (sizeDelta > 0)) {
            p.sizeBase = oldSize + sizeDelta;
            p.openNotional += quoteDelta;
            return 0;
        }
        uint256 absOld = MarginMath.abs(oldSize);
        uint256 absDelta = MarginMath.abs(sizeDelta);
        uint256 closed = absDelta < absOld ? absDelta : absOld;
        int256 quoteClose = closed == absDelta ? quoteDelta : MarginMath.mulDivFloor(quoteDelta, closed, absDelta);
        int256 basisClosed = MarginMath.mulDivCeilSigned(p.openNotional, closed, absOld);
        realized = -quoteClose - basisClosed;
        p.sizeBase = oldSize + sizeDelta;
        p.openNotional = p.openNotional - basisClosed + (quoteDelta - quoteClose);
    }

    /// @dev Close every position of the account on its venue. Returns the total realized PnL, the
    ///      notional closed at execution prices, the penalty owed and the liquidator's part of it.
    function _closeAll(address accountOwner, uint32 subaccount, bytes32 key)
        internal
        returns (int256 realized, uint256 notionalClosed, uint256 penalty, uint256 liquidatorPart)
    {
        Account storage a = accounts[key];
        uint256 mask = a.marketMask;
        for (uint256 market = 0; mask != 0; ++market) {
            if (mask & 1 == 1) {
                (int256 r, uint256 n) = _closePosition(accountOwner, subaccount, key, market);
                realized += r;
                notionalClosed += n;
                MarketParams storage params = markets[market].params;
                uint256 pen = MarginMath.mulDivCeil(n, params.liquidationPenaltyPpm, MarginMath.PPM);
                penalty += pen;
                liquidatorPart += pen * params.liquidatorSharePpm / MarginMath.PPM;
            }
            mask >>= 1;
        }
        a.marketMask = 0;
    }

    /// @dev Close one position at whatever the venue gives; returns realized PnL and notional closed.
    function _closePosition(address accountOwner, uint32 subaccount, bytes32 key, uint256 market)
        internal
        returns (int256 realized, uint256 notionalClosed)
    {
        Position storage p = positions[key][market];
        int256 size = p.sizeBase;
        int256 quoteDelta = markets[market].venue.swap(-size);
        realized = -quoteDelta - p.openNotional;
        notionalClosed = MarginMath.abs(quoteDelta);
        delete positions[key][market];
        emit PositionLiquidated(accountOwner, subaccount, market, -size, quoteDelta, realized);
    }
}
