// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IPriceFeed} from "./interfaces/IPriceFeed.sol";
import {IPriceVenue} from "./interfaces/IPriceVenue.sol";
import {IMarginExchange} from "./interfaces/IMarginExchange.sol";
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
contract MarginExchange is IMarginExchange {
    using SafeERC20 for IERC20;
    using MarginMath for int256;

    // Types (MarginMode, PriceSource, MarketParams, Market, Position, Account, Health), custom errors
    // and events are declared in IMarginExchange.

    // ----------------------------------------------------------------- state

    /// @inheritdoc IMarginExchange
    uint256 public constant MAX_MARKETS = 32;
    /// @inheritdoc IMarginExchange
    uint256 public constant MAX_SUBACCOUNTS = 16;

    /// @inheritdoc IMarginExchange
    IERC20 public immutable collateralToken;
    /// @inheritdoc IMarginExchange
    address public immutable owner;

    Market[] private markets;
    mapping(bytes32 => Account) private accounts;
    mapping(bytes32 => mapping(uint256 => Position)) private positions;

    /// @inheritdoc IMarginExchange
    mapping(address => uint256) public subaccountCount;
    /// @inheritdoc IMarginExchange
    int256 public totalCollateral;
    /// @inheritdoc IMarginExchange
    uint256 public insuranceFund;
    /// @inheritdoc IMarginExchange
    int256 public counterpartyFund;
    /// @inheritdoc IMarginExchange
    uint256 public totalBadDebt;

    /// @param collateralToken_ the settlement token (6 decimals)
    /// @param owner_ market manager
    constructor(IERC20 collateralToken_, address owner_) {
        collateralToken = collateralToken_;
        owner = owner_;
    }

    // ------------------------------------------------------------ governance

    /// @inheritdoc IMarginExchange
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

    /// @inheritdoc IMarginExchange
    function setMarketParams(uint256 market, MarketParams calldata params) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _requireMarket(market);
        _validate(params);
        _accrueFunding(market);
        markets[market].params = params;
        emit MarketParamsUpdated(market, params);
    }

    /// @inheritdoc IMarginExchange
    function depositInsurance(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        insuranceFund += amount;
        emit InsuranceDeposited(msg.sender, amount, insuranceFund);
        collateralToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IMarginExchange
    function fundCounterparty(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        counterpartyFund += int256(amount);
        emit CounterpartyFunded(msg.sender, amount, counterpartyFund);
        collateralToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    // ------------------------------------------------------------- accounts

    /// @inheritdoc IMarginExchange
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

    /// @inheritdoc IMarginExchange
    function deposit(uint32 subaccount, uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        bytes32 key = _existing(msg.sender, subaccount);
        _changeCollateral(key, int256(amount));
        emit Deposited(msg.sender, subaccount, amount);
        collateralToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IMarginExchange
    function withdraw(uint32 subaccount, uint256 amount) external {
        bytes32 key = _existing(msg.sender, subaccount);
        _debitCollateral(msg.sender, subaccount, key, amount);
        emit Withdrawn(msg.sender, subaccount, amount);
        collateralToken.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IMarginExchange
    function transferCollateral(uint32 fromSubaccount, uint32 toSubaccount, uint256 amount) external {
        if (fromSubaccount == toSubaccount) revert SameSubaccount();
        bytes32 fromKey = _existing(msg.sender, fromSubaccount);
        bytes32 toKey = _existing(msg.sender, toSubaccount);
        _debitCollateral(msg.sender, fromSubaccount, fromKey, amount);
        _changeCollateral(toKey, int256(amount));
        emit CollateralTransferred(msg.sender, fromSubaccount, toSubaccount, amount);
    }

    // ---------------------------------------------------------------- trading

    /// @inheritdoc IMarginExchange
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

    /// @inheritdoc IMarginExchange
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

    /// @inheritdoc IMarginExchange
    function marketCount() external view returns (uint256) {
        return markets.length;
    }

    /// @inheritdoc IMarginExchange
    function getMarket(uint256 market) external view returns (Market memory) {
        _requireMarket(market);
        return markets[market];
    }

    /// @inheritdoc IMarginExchange
    function getAccount(address accountOwner, uint32 subaccount) external view returns (Account memory) {
        return accounts[_key(accountOwner, subaccount)];
    }

    /// @inheritdoc IMarginExchange
    function getPosition(address accountOwner, uint32 subaccount, uint256 market)
        external
        view
        returns (Position memory)
    {
        return positions[_key(accountOwner, subaccount)][market];
    }

    /// @inheritdoc IMarginExchange
    function accountHealth(address accountOwner, uint32 subaccount) public view returns (Health memory) {
        return _health(_key(accountOwner, subaccount), false);
    }

    /// @inheritdoc IMarginExchange
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

    /// @inheritdoc IMarginExchange
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

    /// @inheritdoc IMarginExchange
    function indexPriceE8(uint256 market) external view returns (uint256) {
        return _indexPrice(market, false);
    }

    /// @inheritdoc IMarginExchange
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
