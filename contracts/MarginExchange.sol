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
///         oracle-priced margin checks, permissionless liquidation and the rest of the liquidation
///         waterfall (partial liquidation, backstop takeover, insurance fund, auto-deleveraging,
///         socialized loss).
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
///      realized losses, and it absorbs bad debt that the insurance fund cannot cover. No entry point
///      may leave it below zero (`CounterpartyFundExhausted`).
///
///      The liquidation waterfall, each step off by default: a liquidator closes the positions on the
///      venues (in full, or in slices of `partialCloseFactorPpm` above `fullCloseNotional`); below
///      `backstopThresholdPpm` x maintenance the backstop vault takes the account over at the margin
///      price; the insurance fund covers what is left negative; with `adlEnabled`, an account the
///      fund cannot cover is closed at its bankruptcy prices against opposite positions in profit;
///      what remains is bad debt socialized to the counterparty fund.
contract MarginExchange is IMarginExchange {
    using SafeERC20 for IERC20;
    using MarginMath for int256;

    // Types (MarginMode, PriceSource, MarketParams, RiskConfig, Market, Position, Account, Health),
    // custom errors and events are declared in IMarginExchange. The storage records below pack the
    // same data (plus bookkeeping the interface does not expose) into as few slots as today's calls
    // read, so that the waterfall's switches cost the default configuration no extra storage reads.

    /// @dev An account in storage. Slot 0 (read by every call on the account): mode, isolated market
    ///      (below MAX_MARKETS, so 8 bits), the listed mask (bit m: the key is in `holders[m]`) and the
    ///      (owner, subaccount) its key hashes (filled when the account opens, read when
    ///      auto-deleveraging enumerates holders). Slot 1: the open-market mask. Slot 2: collateral.
    struct AccountData {
        MarginMode mode;
        uint8 isolatedMarket;
        uint32 listedMask;
        uint32 subaccount;
        address owner;
        uint256 marketMask;
        int256 collateral;
    }

    /// @dev A market in storage: `MarketParams` split so that the partial-liquidation parameters
    ///      share the venue's slot (read by every liquidation anyway), the mark price's half-life and
    ///      last sample time share the funding clock's slot, and the basis EMA fills one slot.
    struct MarketData {
        IPriceFeed feed;
        IPriceVenue venue;
        uint32 partialCloseFactorPpm;
        uint64 fullCloseNotional;
        uint32 initialMarginPpm;
        uint32 maintenanceMarginPpm;
        uint32 liquidationPenaltyPpm;
        uint32 liquidatorSharePpm;
        uint32 maxOracleAgeS;
        PriceSource marginPrice;
        uint32 fundingPeriodS;
        uint32 fundingCapPpm;
        int256 fundingIndex;
        uint64 lastFundingTime;
        uint32 markHalfLifeS;
        uint64 markUpdatedAt;
        // |numerator| <= 1e24 (the sample cap) x seconds since listing and denominator <= 1e18 x
        // seconds since listing: both fit 128 bits for timestamps below 2^40
        int128 markNumerator;
        uint128 markDenominator;
    }

    /// @dev Exchange-wide values in one slot: the market count and the waterfall switches.
    struct Globals {
        uint32 marketCount;
        uint32 backstopThresholdPpm;
        bool adlEnabled;
    }

    /// @dev One deleveraging candidate: an opposite position in profit of a healthy account.
    struct Candidate {
        bytes32 key;
        uint256 score; // Hyperliquid's ADL index, scaled by 1e18
        uint256 headroom; // equity - maintenance requirement, collateral units
    }

    /// @dev The bankrupt account's position in one market while it is deleveraged.
    struct AdlMarket {
        uint256 market;
        uint256 price; // margin price
        int256 size;
        uint256 absSize;
        uint256 mm; // maintenance margin, ppm
        int256 target; // what closing all of `size` at the bankruptcy price pays the account
        int256 extra; // target - value at the margin price: the deficit share
    }

    /// @dev Candidates in ADL order: a binary max-heap of indices into the candidate array.
    struct Queue {
        Candidate[] cands;
        uint256[] heap;
        uint256 size;
    }

    /// @dev The state of one `deleverage` call.
    struct AdlRun {
        address owner;
        uint32 subaccount;
        bytes32 key;
        int256 deficit; // -equity at margin prices: what the bankruptcy prices hand to counterparties
        uint256 totalNotional;
        uint256 deleveragedNotional;
        uint256 venueNotional;
        int256 realized;
    }

    /// @dev Rounding slack (collateral units) an ADL fill can cost its counterparty against the
    ///      analytic cap: 1 for the fill quote, 1 for the position values, 2 for the requirement.
    uint256 internal constant ADL_SLACK = 4;

    /// @dev Cap on one basis sample of the mark price's EMA (venue a million times the index).
    int256 internal constant MAX_BASIS_WAD = 1e24;

    // ----------------------------------------------------------------- state

    /// @inheritdoc IMarginExchange
    uint256 public constant MAX_MARKETS = 32;
    /// @inheritdoc IMarginExchange
    uint256 public constant MAX_SUBACCOUNTS = 16;

    /// @inheritdoc IMarginExchange
    IERC20 public immutable collateralToken;
    /// @inheritdoc IMarginExchange
    address public immutable owner;
    /// @dev Key of the backstop vault account (this exchange, subaccount 0).
    bytes32 private immutable vaultKey;

    MarketData[MAX_MARKETS] private markets;
    mapping(bytes32 => AccountData) private accounts;
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

    Globals private globals;
    /// @dev Per market, every account key that ever held a position there (append-only).
    bytes32[][MAX_MARKETS] private holders;

    /// @param collateralToken_ the settlement token (6 decimals)
    /// @param owner_ market manager
    constructor(IERC20 collateralToken_, address owner_) {
        collateralToken = collateralToken_;
        owner = owner_;
        vaultKey = _key(address(this), 0);
    }

    // ------------------------------------------------------------ governance

    /// @inheritdoc IMarginExchange
    function addMarket(IPriceFeed feed, IPriceVenue venue, MarketParams calldata params)
        external
        returns (uint256 market)
    {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        market = globals.marketCount;
        if (market >= MAX_MARKETS) revert TooManyMarkets(MAX_MARKETS);
        _validate(params);
        _requireOwnVenue(venue);
        MarketData storage m = markets[market];
        m.feed = feed;
        m.venue = venue;
        _storeParams(m, params);
        m.lastFundingTime = uint64(block.timestamp);
        m.markUpdatedAt = uint64(block.timestamp);
        globals.marketCount = uint32(market + 1);
        emit MarketAdded(market, address(feed), address(venue), params);
    }

    /// @inheritdoc IMarginExchange
    function setMarketParams(uint256 market, MarketParams calldata params) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _requireMarket(market);
        _validate(params);
        _loadMarket(market);
        MarketData storage m = markets[market];
        bool markStarts = m.marginPrice != PriceSource.MARK && params.marginPrice == PriceSource.MARK;
        _storeParams(m, params);
        emit MarketParamsUpdated(market, params);
        if (markStarts) {
            // a market switching to the mark price starts its basis EMA afresh
            m.markNumerator = 0;
            m.markDenominator = 0;
            m.markUpdatedAt = uint64(block.timestamp);
            emit MarkBasisUpdated(market, 0, 0, 0, 0, block.timestamp);
        }
    }

    /// @inheritdoc IMarginExchange
    function setRiskConfig(RiskConfig calldata config) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        if (config.backstopThresholdPpm > MarginMath.PPM) revert InvalidRiskConfig(config.backstopThresholdPpm);
        globals.backstopThresholdPpm = config.backstopThresholdPpm;
        globals.adlEnabled = config.adlEnabled;
        emit RiskConfigUpdated(config);
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
        AccountData storage a = accounts[key];
        if (a.mode != MarginMode.NONE) revert SubaccountExists(msg.sender, subaccount);
        if (mode == MarginMode.NONE) revert WrongMarginMode(mode, isolatedMarket);
        if (mode == MarginMode.ISOLATED) _requireMarket(isolatedMarket);
        else isolatedMarket = 0;
        if (subaccountCount[msg.sender] >= MAX_SUBACCOUNTS) {
            revert TooManySubaccounts(msg.sender, MAX_SUBACCOUNTS);
        }
        subaccountCount[msg.sender] += 1;
        a.mode = mode;
        a.isolatedMarket = uint8(isolatedMarket);
        a.subaccount = subaccount;
        a.owner = msg.sender;
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
        AccountData storage a = accounts[key];
        if (a.mode == MarginMode.ISOLATED && a.isolatedMarket != market) {
            revert WrongMarginMode(a.mode, market);
        }
        _loadMarket(market);
        bool fundMoved = _settleAccount(msg.sender, subaccount, key);

        int256 quoteDelta = markets[market].venue.swap(sizeDelta);
        _checkLimit(sizeDelta, quoteDelta, limitPriceE8);
        Position storage p = positions[key][market];
        int256 oldSize = p.sizeBase;
        if (oldSize == 0) _startPosition(a, p, key, market);
        int256 realized = _applyFill(p, sizeDelta, quoteDelta);
        _setMarketBit(a, market, p.sizeBase != 0);
        if (p.sizeBase == 0) delete positions[key][market];
        if (realized != 0) {
            _realize(key, realized);
            fundMoved = true;
        }
        emit Traded(msg.sender, subaccount, market, sizeDelta, quoteDelta, p.sizeBase, p.openNotional, realized);
        if (fundMoved) _requireCounterpartyFund();

        int256 newSize = oldSize + sizeDelta;
        bool flipped = oldSize != 0 && newSize != 0 && (oldSize > 0) != (newSize > 0);
        bool riskIncreasing = flipped || MarginMath.abs(newSize) > MarginMath.abs(oldSize);
        if (riskIncreasing) _requireInitialMargin(key);
    }

    // ------------------------------------------------------------ liquidation

    /// @inheritdoc IMarginExchange
    function liquidate(address accountOwner, uint32 subaccount) external {
        if (accountOwner == address(this)) revert ProtectedAccount();
        bytes32 key = _existing(accountOwner, subaccount);
        _settleAccount(accountOwner, subaccount, key);
        {
            Health memory h = _health(key, true);
            if (!h.liquidatable) revert AccountHealthy(h.equity, h.maintenanceRequirement);
        }
        if (globals.adlEnabled && accounts[key].marketMask != 0) {
            // (an account without positions has nothing to deleverage: its deficit takes the
            // insurance and bad-debt path below)
            int256 predicted = _predictLiquidation(key);
            uint256 fund = insuranceFund;
            if (predicted + int256(fund) < 0) revert DeleverageRequired(predicted, fund);
        }

        (int256 realized, uint256 notionalClosed, uint256 penalty, uint256 liquidatorPart) =
            _closeAll(accountOwner, subaccount, key);
        if (realized != 0) _realize(key, realized);
        uint256 reward = _payPenalty(accountOwner, subaccount, key, notionalClosed, penalty, liquidatorPart);
        _requireCounterpartyFund();
        if (reward != 0) collateralToken.safeTransfer(msg.sender, reward);
    }

    /// @inheritdoc IMarginExchange
    function takeover(address accountOwner, uint32 subaccount, uint32 liquidatorSubaccount) external {
        if (accountOwner == address(this)) revert ProtectedAccount();
        bytes32 key = _existing(accountOwner, subaccount);
        bytes32 liqKey = _existing(msg.sender, liquidatorSubaccount);
        if (key == liqKey) revert SameSubaccount();
        MarginMode liqMode = accounts[liqKey].mode;
        if (liqMode != MarginMode.CROSS) revert WrongMarginMode(liqMode, 0);
        if (accounts[key].marketMask == 0) revert NothingToLiquidate(accountOwner, subaccount);
        _settleAccount(accountOwner, subaccount, key);
        _settleAccount(msg.sender, liquidatorSubaccount, liqKey);
        {
            Health memory h = _health(key, true);
            if (!h.liquidatable) revert AccountHealthy(h.equity, h.maintenanceRequirement);
            uint256 fund = insuranceFund;
            if (globals.adlEnabled && h.equity + int256(fund) < 0) revert DeleverageRequired(h.equity, fund);
        }

        (int256 realized, uint256 notional, uint256 penalty, uint256 liquidatorPart) =
            _takeOverAll(key, liqKey);
        if (realized != 0) _realize(key, realized);
        uint256 reward = _payPenalty(accountOwner, subaccount, key, notional, penalty, liquidatorPart);
        _requireCounterpartyFund();
        {
            // the one shared margin function: the liquidator must carry what it took over
            Health memory hl = _health(liqKey, true);
            if (hl.equity < int256(hl.initialRequirement)) {
                revert LiquidatorMarginShort(hl.equity, hl.initialRequirement);
            }
        }
        if (reward != 0) collateralToken.safeTransfer(msg.sender, reward);
    }

    /// @inheritdoc IMarginExchange
    function backstopLiquidate(address accountOwner, uint32 subaccount) external {
        if (accountOwner == address(this)) revert ProtectedAccount();
        uint256 threshold = globals.backstopThresholdPpm;
        if (threshold == 0) revert BackstopDisabled();
        bytes32 key = _existing(accountOwner, subaccount);
        if (accounts[key].marketMask == 0) revert NothingToLiquidate(accountOwner, subaccount);
        _settleAccount(accountOwner, subaccount, key);
        {
            Health memory h = _health(key, true);
            if (h.equity * int256(MarginMath.PPM) >= int256(threshold * h.maintenanceRequirement)) {
                revert AboveBackstopThreshold(
                    h.equity, MarginMath.mulDivCeil(h.maintenanceRequirement, threshold, MarginMath.PPM)
                );
            }
            uint256 fund = insuranceFund;
            if (globals.adlEnabled && h.equity + int256(fund) < 0) revert DeleverageRequired(h.equity, fund);
        }

        bytes32 vault = _openVault();
        int256 realized = _moveToVault(accountOwner, subaccount, key, vault);
        if (realized != 0) _realize(key, realized);

        int256 equity = accounts[key].collateral;
        uint256 toVault;
        uint256 cover;
        uint256 bad;
        if (equity > 0) {
            toVault = uint256(equity);
            _changeCollateral(key, -equity);
            _changeCollateral(vault, equity);
        } else if (equity < 0) {
            (cover, bad) = _absorbDeficit(accountOwner, subaccount, key, uint256(-equity));
        }
        emit BackstopLiquidated(accountOwner, subaccount, msg.sender, equity, toVault, cover, bad);
        _requireCounterpartyFund();
    }

    /// @inheritdoc IMarginExchange
    function deleverage(address accountOwner, uint32 subaccount) external {
        if (accountOwner == address(this)) revert ProtectedAccount();
        if (!globals.adlEnabled) revert AdlDisabled();
        bytes32 key = _existing(accountOwner, subaccount);
        if (accounts[key].marketMask == 0) revert NothingToLiquidate(accountOwner, subaccount);
        _settleAccount(accountOwner, subaccount, key);
        Health memory h = _health(key, true);
        {
            // Deleverage when the fund cannot cover the account at margin prices, or when a liquidation
            // would revert DeleverageRequired (its venue closes would leave more than the fund covers),
            // so that the two never refuse the same account.
            uint256 fund = insuranceFund;
            if (h.equity + int256(fund) >= 0 && !(h.liquidatable && _predictLiquidation(key) + int256(fund) < 0)) {
                revert InsuranceCanCover(h.equity, fund);
            }
        }

        AdlRun memory run = AdlRun({
            owner: accountOwner,
            subaccount: subaccount,
            key: key,
            deficit: -h.equity,
            totalNotional: h.notional,
            deleveragedNotional: 0,
            venueNotional: 0,
            realized: 0
        });
        uint256 mask = accounts[key].marketMask;
        for (uint256 market = 0; mask != 0; ++market) {
            if (mask & 1 == 1) _deleverageMarket(run, market);
            mask >>= 1;
        }
        accounts[key].marketMask = 0;
        if (run.realized != 0) _realize(key, run.realized);

        int256 equity = accounts[key].collateral;
        uint256 cover;
        uint256 bad;
        if (equity < 0) {
            (cover, bad) = _absorbDeficit(accountOwner, subaccount, key, uint256(-equity));
        } else if (equity > 0) {
            // At bankruptcy prices the account ends at zero: what rounding or a venue close left above
            // it goes to the insurance fund.
            _changeCollateral(key, -equity);
            insuranceFund += uint256(equity);
            emit InsuranceDeposited(accountOwner, uint256(equity), insuranceFund);
        }
        emit AccountDeleveraged(
            accountOwner, subaccount, msg.sender, run.deleveragedNotional, run.venueNotional, cover, bad
        );
        _requireCounterpartyFund();
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IMarginExchange
    function marketCount() external view returns (uint256) {
        return globals.marketCount;
    }

    /// @inheritdoc IMarginExchange
    function riskConfig() external view returns (RiskConfig memory) {
        return RiskConfig({backstopThresholdPpm: globals.backstopThresholdPpm, adlEnabled: globals.adlEnabled});
    }

    /// @inheritdoc IMarginExchange
    function backstopVault() external view returns (address vaultOwner, uint32 vaultSubaccount) {
        return (address(this), 0);
    }

    /// @inheritdoc IMarginExchange
    function holderCount(uint256 market) external view returns (uint256 count) {
        _requireMarket(market);
        return holders[market].length;
    }

    /// @inheritdoc IMarginExchange
    function holderAt(uint256 market, uint256 index) external view returns (address accountOwner, uint32 subaccount) {
        _requireMarket(market);
        AccountData storage a = accounts[holders[market][index]];
        return (a.owner, a.subaccount);
    }

    /// @inheritdoc IMarginExchange
    function getMarket(uint256 market) external view returns (Market memory) {
        _requireMarket(market);
        MarketData storage m = markets[market];
        return Market({
            feed: m.feed,
            venue: m.venue,
            params: MarketParams({
                initialMarginPpm: m.initialMarginPpm,
                maintenanceMarginPpm: m.maintenanceMarginPpm,
                liquidationPenaltyPpm: m.liquidationPenaltyPpm,
                liquidatorSharePpm: m.liquidatorSharePpm,
                maxOracleAgeS: m.maxOracleAgeS,
                marginPrice: m.marginPrice,
                fundingPeriodS: m.fundingPeriodS,
                fundingCapPpm: m.fundingCapPpm,
                partialCloseFactorPpm: m.partialCloseFactorPpm,
                fullCloseNotional: m.fullCloseNotional,
                markHalfLifeS: m.markHalfLifeS
            }),
            fundingIndex: m.fundingIndex,
            lastFundingTime: m.lastFundingTime
        });
    }

    /// @inheritdoc IMarginExchange
    function getAccount(address accountOwner, uint32 subaccount) external view returns (Account memory) {
        AccountData storage a = accounts[_key(accountOwner, subaccount)];
        return Account({mode: a.mode, isolatedMarket: a.isolatedMarket, marketMask: a.marketMask, collateral: a.collateral});
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
        int256 mm = int256(uint256(markets[market].maintenanceMarginPpm));
        // E(p) = E0 + s (p - p0) / 1e20 ; MM(p) = MM0 + |s| (p - p0) mm / (1e20 PPM)
        // => p = p0 + (MM0 - E0) * 1e20 * PPM / (s * PPM - |s| * mm)
        int256 denom = size * int256(MarginMath.PPM) - int256(MarginMath.abs(size)) * mm;
        int256 gap = int256(h.maintenanceRequirement) - h.equity;
        int256 p = p0 + gap * int256(MarginMath.VALUE_SCALE) * int256(MarginMath.PPM) / denom;
        return p > 0 ? uint256(p) : 0;
    }

    /// @inheritdoc IMarginExchange
    function indexPriceE8(uint256 market) external view returns (uint256) {
        _requireMarket(market);
        return _indexPrice(market, false);
    }

    /// @inheritdoc IMarginExchange
    function marginPriceE8(uint256 market) external view returns (uint256) {
        _requireMarket(market);
        return _marginPrice(market, false);
    }

    /// @inheritdoc IMarginExchange
    function markBasis(uint256 market) external view returns (MarkBasis memory) {
        _requireMarket(market);
        MarketData storage m = markets[market];
        return MarkBasis({numerator: m.markNumerator, denominator: m.markDenominator, updatedAt: m.markUpdatedAt});
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
        if (market >= globals.marketCount) revert UnknownMarket(market);
    }

    /// @dev Codes: 1 maintenance zero or not below initial, 2 initial above 100%, 3 penalty above
    ///      100%, 4 liquidator share above 100%, 5 funding cap without a funding period, 6 partial
    ///      close factor above 100%, 7 mark price without a basis half-life.
    function _validate(MarketParams calldata p) internal pure {
        if (p.maintenanceMarginPpm == 0 || p.maintenanceMarginPpm >= p.initialMarginPpm) {
            revert InvalidMarketParams(1);
        }
        if (p.initialMarginPpm > MarginMath.PPM) revert InvalidMarketParams(2);
        if (p.liquidationPenaltyPpm > MarginMath.PPM) revert InvalidMarketParams(3);
        if (p.liquidatorSharePpm > MarginMath.PPM) revert InvalidMarketParams(4);
        if (p.fundingCapPpm != 0 && p.fundingPeriodS == 0) revert InvalidMarketParams(5);
        if (p.partialCloseFactorPpm > MarginMath.PPM) revert InvalidMarketParams(6);
        if (p.marginPrice == PriceSource.MARK && p.markHalfLifeS == 0) revert InvalidMarketParams(7);
    }

    /// @dev The venue must name this exchange as its only trader (a venue is only ever called after it
    ///      passed this check).
    function _requireOwnVenue(IPriceVenue venue) internal view {
        address trader;
        if (address(venue).code.length != 0) {
            try venue.exchange() returns (address e) {
                trader = e;
            } catch {}
        }
        if (trader != address(this)) revert ForeignVenue(address(venue));
    }

    function _storeParams(MarketData storage m, MarketParams calldata p) internal {
        m.partialCloseFactorPpm = p.partialCloseFactorPpm;
        m.fullCloseNotional = p.fullCloseNotional;
        m.initialMarginPpm = p.initialMarginPpm;
        m.maintenanceMarginPpm = p.maintenanceMarginPpm;
        m.liquidationPenaltyPpm = p.liquidationPenaltyPpm;
        m.liquidatorSharePpm = p.liquidatorSharePpm;
        m.maxOracleAgeS = p.maxOracleAgeS;
        m.marginPrice = p.marginPrice;
        m.fundingPeriodS = p.fundingPeriodS;
        m.fundingCapPpm = p.fundingCapPpm;
        m.markHalfLifeS = p.markHalfLifeS;
    }

    function _indexPrice(uint256 market, bool enforceAge) internal view returns (uint256) {
        MarketData storage m = markets[market];
        (, int256 answer,, uint256 updatedAt,) = m.feed.latestRoundData();
        if (answer <= 0) revert InvalidOraclePrice(market, answer);
        uint256 maxAge = m.maxOracleAgeS;
        if (enforceAge && maxAge != 0 && block.timestamp > updatedAt + maxAge) {
            revert StalePrice(market, updatedAt, block.timestamp);
        }
        return uint256(answer);
    }

    function _marginPrice(uint256 market, bool enforceAge) internal view returns (uint256) {
        PriceSource source = markets[market].marginPrice;
        if (source == PriceSource.MARK) return _markPrice(market, enforceAge);
        if (source == PriceSource.VENUE) return markets[market].venue.markPriceE8();
        return _indexPrice(market, enforceAge);
    }

    /// @dev The robust mark price (as Hyperliquid's): the median of the index, the venue's price and
    ///      index x (1 + EMA of the venue / index basis), the EMA taken as of this block. A move of
    ///      the venue alone moves the mark no further than the other two prices.
    function _markPrice(uint256 market, bool enforceAge) internal view returns (uint256) {
        uint256 index = _indexPrice(market, enforceAge);
        uint256 venuePrice = markets[market].venue.markPriceE8();
        (,,, int256 ema) = _markBasisNow(market, index, venuePrice);
        int256 scaled = int256(MarginMath.WAD) + ema;
        uint256 basisMark = scaled > 0 ? index * uint256(scaled) / MarginMath.WAD : 0;
        return MarginMath.median3(index, venuePrice, basisMark);
    }

    /// @dev The basis EMA as of this block (what `_checkpointMark` stores): the stored state decays
    ///      by 2^(-dt / half-life) and takes the current basis venue / index - 1 as the sample held
    ///      for the dt seconds since the last one (Hyperliquid's time-weighted EMA:
    ///      numerator = numerator x w + sample x dt, denominator = denominator x w + dt). Within a
    ///      block (dt = 0) the EMA does not move, whatever trades do to the venue.
    function _markBasisNow(uint256 market, uint256 indexPrice, uint256 venuePrice)
        internal
        view
        returns (int256 sample, int256 num, uint256 den, int256 ema)
    {
        MarketData storage m = markets[market];
        sample = MarginMath.mulDivFloor(int256(venuePrice) - int256(indexPrice), MarginMath.WAD, indexPrice);
        if (sample > MAX_BASIS_WAD) sample = MAX_BASIS_WAD;
        num = m.markNumerator;
        den = m.markDenominator;
        uint256 dt = block.timestamp - m.markUpdatedAt;
        if (dt != 0) {
            uint256 w = MarginMath.halfLifeDecayWad(dt, m.markHalfLifeS);
            num = MarginMath.mulDivFloor(num, w, MarginMath.WAD) + sample * int256(dt);
            den = den * w / MarginMath.WAD + dt * MarginMath.WAD;
        }
        ema = den == 0 ? sample : MarginMath.mulDivFloor(num, MarginMath.WAD, den);
    }

    /// @dev Load a market's context for an entry point: accrue its funding and, when it margins on the
    ///      mark price, store the basis EMA's sample for the time since the last one (before any venue
    ///      trade of the entry point, so each sample is the basis that held over its interval).
    function _loadMarket(uint256 market) internal {
        _accrueFunding(market);
        MarketData storage m = markets[market];
        if (m.marginPrice != PriceSource.MARK || m.markUpdatedAt == block.timestamp) return;
        (int256 sample, int256 num, uint256 den, int256 ema) =
            _markBasisNow(market, _indexPrice(market, false), m.venue.markPriceE8());
        m.markNumerator = int128(num);
        m.markDenominator = uint128(den);
        m.markUpdatedAt = uint64(block.timestamp);
        emit MarkBasisUpdated(market, sample, ema, num, den, block.timestamp);
    }

    /// @dev Funding index now, without writing it: the premium (mark - index) / index, capped, accrues
    ///      linearly over the funding period. Longs pay when the mark is above the index.
    function _fundingIndexNow(uint256 market) internal view returns (int256 index, int256 premiumPpm) {
        MarketData storage m = markets[market];
        index = m.fundingIndex;
        uint256 period = m.fundingPeriodS;
        uint256 dt = block.timestamp - m.lastFundingTime;
        if (period == 0 || dt == 0) return (index, 0);
        uint256 indexPrice = _indexPrice(market, false);
        int256 mark = int256(m.venue.markPriceE8());
        premiumPpm = (mark - int256(indexPrice)) * int256(MarginMath.PPM) / int256(indexPrice);
        int256 cap = int256(uint256(m.fundingCapPpm));
        if (cap != 0 && premiumPpm > cap) premiumPpm = cap;
        if (cap != 0 && premiumPpm < -cap) premiumPpm = -cap;
        // quote units * 1e18 per whole base: priceE8 / 100 * 1e18 * premium / 1e6 = priceE8 * premium * 1e10
        index += int256(indexPrice) * premiumPpm * 1e10 * int256(dt) / int256(period);
    }

    function _accrueFunding(uint256 market) internal {
        MarketData storage m = markets[market];
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

    /// @dev Accrue funding on every market the account holds and apply what it owes. Returns whether
    ///      any funding moved (and with it the counterparty fund).
    function _settleAccount(address accountOwner, uint32 subaccount, bytes32 key) internal returns (bool paid) {
        uint256 mask = accounts[key].marketMask;
        for (uint256 market = 0; mask != 0; ++market) {
            if (mask & 1 == 1) {
                _loadMarket(market);
                Position storage p = positions[key][market];
                int256 index = markets[market].fundingIndex;
                int256 owed = _fundingOwed(p, index);
                p.lastFundingIndex = index;
                if (owed != 0) {
                    _realize(key, -owed);
                    paid = true;
                    emit FundingSettled(accountOwner, subaccount, market, owed);
                }
            }
            mask >>= 1;
        }
    }

    /// @dev The one shared margin function: equity and requirements at the margin prices.
    function _health(bytes32 key, bool enforceAge) internal view returns (Health memory h) {
        AccountData storage a = accounts[key];
        h.equity = a.collateral;
        uint256 mask = a.marketMask;
        for (uint256 market = 0; mask != 0; ++market) {
            if (mask & 1 == 1) {
                Position storage p = positions[key][market];
                MarketData storage m = markets[market];
                uint256 price = _marginPrice(market, enforceAge);
                (int256 index,) = _fundingIndexNow(market);
                h.equity += p.sizeBase.value(price) - p.openNotional - _fundingOwed(p, index);
                uint256 n = MarginMath.notional(p.sizeBase, price);
                h.notional += n;
                h.initialRequirement += MarginMath.mulDivCeil(n, m.initialMarginPpm, MarginMath.PPM);
                h.maintenanceRequirement += MarginMath.mulDivCeil(n, m.maintenanceMarginPpm, MarginMath.PPM);
            }
            mask >>= 1;
        }
        h.liquidatable = h.equity < int256(h.maintenanceRequirement);
    }

    function _requireInitialMargin(bytes32 key) internal view {
        Health memory h = _health(key, true);
        if (h.equity < int256(h.initialRequirement)) revert InsufficientMargin(h.equity, h.initialRequirement);
    }

    function _requireCounterpartyFund() internal view {
        int256 fund = counterpartyFund;
        if (fund < 0) revert CounterpartyFundExhausted(fund);
    }

    /// @dev Settle, then take `amount` of collateral out of an account that must keep initial margin.
    function _debitCollateral(address accountOwner, uint32 subaccount, bytes32 key, uint256 amount) internal {
        if (amount == 0) revert ZeroAmount();
        bool fundMoved = _settleAccount(accountOwner, subaccount, key);
        AccountData storage a = accounts[key];
        if (a.collateral < int256(amount)) revert InsufficientCollateral(a.collateral, amount);
        _changeCollateral(key, -int256(amount));
        if (fundMoved) _requireCounterpartyFund();
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

    /// @dev Negative equity left on an account without positions: the insurance fund covers what it
    ///      can, the rest is bad debt socialized to the counterparty fund.
    function _absorbDeficit(address accountOwner, uint32 subaccount, bytes32 key, uint256 deficit)
        internal
        returns (uint256 cover, uint256 bad)
    {
        cover = deficit < insuranceFund ? deficit : insuranceFund;
        bad = deficit - cover;
        insuranceFund -= cover;
        counterpartyFund -= int256(bad);
        totalBadDebt += bad;
        _changeCollateral(key, int256(deficit));
        if (bad != 0) emit BadDebtRecorded(accountOwner, subaccount, bad, totalBadDebt);
    }

    function _setMarketBit(AccountData storage a, uint256 market, bool open) internal {
        if (open) a.marketMask |= (uint256(1) << market);
        else a.marketMask &= ~(uint256(1) << market);
    }

    /// @dev A position opens in `market`: start its funding clock and, on the account's first
    ///      position there, append the account to the market's holders.
    function _startPosition(AccountData storage a, Position storage p, bytes32 key, uint256 market) internal {
        p.lastFundingIndex = markets[market].fundingIndex;
        uint32 bit = uint32(1 << market);
        if (a.listedMask & bit == 0) {
            a.listedMask |= bit;
            holders[market].push(key);
        }
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

    // ------------------------------------------------ liquidation internals

    /// @dev The signed size a liquidation closes of a position of `size`: all of it, or, when the
    ///      market's close factor is in (0, 100%) and the notional at the margin price is above
    ///      `fullCloseNotional`, ceil(|size| x factor) (rounded up: against the account).
    function _liquidationSize(uint256 market, int256 size) internal view returns (int256) {
        MarketData storage m = markets[market];
        uint256 factor = m.partialCloseFactorPpm;
        if (factor == 0 || factor >= MarginMath.PPM) return size;
        if (MarginMath.notional(size, _marginPrice(market, false)) <= m.fullCloseNotional) return size;
        uint256 slice = MarginMath.mulDivCeil(MarginMath.abs(size), factor, MarginMath.PPM);
        return size > 0 ? int256(slice) : -int256(slice);
    }

    /// @dev The account's equity after `liquidate`'s closes, quoted on the venues without trading
    ///      (penalty not deducted; positions left open valued at the margin price).
    function _predictLiquidation(bytes32 key) internal view returns (int256 equity) {
        AccountData storage a = accounts[key];
        equity = a.collateral;
        uint256 mask = a.marketMask;
        for (uint256 market = 0; mask != 0; ++market) {
            if (mask & 1 == 1) {
                Position storage p = positions[key][market];
                int256 size = p.sizeBase;
                int256 closeSize = _liquidationSize(market, size);
                equity += -markets[market].venue.quoteSwap(-closeSize) - p.openNotional;
                if (closeSize != size) equity += (size - closeSize).value(_marginPrice(market, false));
            }
            mask >>= 1;
        }
    }

    /// @dev Close every position of the account (in full or a slice) on its venue. Returns the total
    ///      realized PnL, the notional closed at execution prices, the penalty owed and the
    ///      liquidator's part of it. Markets whose position is only partly closed keep their bit.
    function _closeAll(address accountOwner, uint32 subaccount, bytes32 key)
        internal
        returns (int256 realized, uint256 notionalClosed, uint256 penalty, uint256 liquidatorPart)
    {
        AccountData storage a = accounts[key];
        uint256 mask = a.marketMask;
        uint256 left;
        for (uint256 market = 0; mask != 0; ++market) {
            if (mask & 1 == 1) {
                (int256 r, uint256 n, bool open) = _closePosition(accountOwner, subaccount, key, market);
                if (open) left |= uint256(1) << market;
                realized += r;
                notionalClosed += n;
                MarketData storage m = markets[market];
                uint256 pen = MarginMath.mulDivCeil(n, m.liquidationPenaltyPpm, MarginMath.PPM);
                penalty += pen;
                liquidatorPart += pen * m.liquidatorSharePpm / MarginMath.PPM;
            }
            mask >>= 1;
        }
        a.marketMask = left;
    }

    /// @dev Close one position (or its liquidation slice) at whatever the venue gives; returns realized
    ///      PnL, notional closed and whether part of the position is left.
    function _closePosition(address accountOwner, uint32 subaccount, bytes32 key, uint256 market)
        internal
        returns (int256 realized, uint256 notionalClosed, bool left)
    {
        Position storage p = positions[key][market];
        int256 size = p.sizeBase;
        int256 closeSize = _liquidationSize(market, size);
        IPriceVenue venue = markets[market].venue;
        if (closeSize == size) {
            int256 basis = p.openNotional;
            delete positions[key][market];
            int256 quoteDelta = venue.swap(-size);
            realized = -quoteDelta - basis;
            notionalClosed = MarginMath.abs(quoteDelta);
            emit PositionLiquidated(accountOwner, subaccount, market, -size, quoteDelta, realized, 0, 0);
        } else {
            int256 quoteDelta = venue.swap(-closeSize);
            realized = _applyFill(p, -closeSize, quoteDelta);
            notionalClosed = MarginMath.abs(quoteDelta);
            left = true;
            emit PositionLiquidated(
                accountOwner, subaccount, market, -closeSize, quoteDelta, realized, p.sizeBase, p.openNotional
            );
        }
    }

    /// @dev After a liquidation's closes or takeovers (PnL realized): the penalty on the notional is
    ///      paid from the equity left (collateral when no position is left, equity at margin prices
    ///      when one is), the liquidator's pro-rata share of what was paid to it (rounded down), the
    ///      rest to insurance; an account left negative without positions goes to the insurance fund
    ///      and then bad debt. Emits `Liquidated`; returns the liquidator's reward (sent by the caller).
    function _payPenalty(
        address accountOwner,
        uint32 subaccount,
        bytes32 key,
        uint256 notional,
        uint256 penalty,
        uint256 liquidatorPart
    ) internal returns (uint256 reward) {
        bool isPartial = accounts[key].marketMask != 0;
        int256 equity = isPartial ? _health(key, false).equity : accounts[key].collateral;
        uint256 penaltyPaid;
        uint256 cover;
        uint256 bad;
        if (equity > 0) {
            penaltyPaid = penalty < uint256(equity) ? penalty : uint256(equity);
            // liquidator's pro-rata part of what was actually paid, rounded down; the rest insures
            reward = penalty == 0 ? 0 : liquidatorPart * penaltyPaid / penalty;
            _changeCollateral(key, -int256(penaltyPaid));
            insuranceFund += penaltyPaid - reward;
        } else if (equity < 0 && !isPartial) {
            (cover, bad) = _absorbDeficit(accountOwner, subaccount, key, uint256(-equity));
        }
        emit Liquidated(
            accountOwner, subaccount, msg.sender, notional, penaltyPaid, reward, penaltyPaid - reward, cover, bad, isPartial
        );
    }

    // -------------------------------------------------- takeover internals

    /// @dev Move every position of the account (or its liquidation slice) to the liquidator's
    ///      subaccount at the margin price. Returns the PnL the account realizes, the notional taken
    ///      over at the margin price, the penalty owed and the liquidator's part of it. Markets whose
    ///      position is only partly taken keep their bit.
    function _takeOverAll(bytes32 key, bytes32 liqKey)
        internal
        returns (int256 realized, uint256 notional, uint256 penalty, uint256 liquidatorPart)
    {
        AccountData storage a = accounts[key];
        uint256 mask = a.marketMask;
        uint256 left;
        for (uint256 market = 0; mask != 0; ++market) {
            if (mask & 1 == 1) {
                (int256 r, uint256 n, bool open) = _takeOverPosition(key, liqKey, market);
                if (open) left |= uint256(1) << market;
                realized += r;
                notional += n;
                MarketData storage m = markets[market];
                uint256 pen = MarginMath.mulDivCeil(n, m.liquidationPenaltyPpm, MarginMath.PPM);
                penalty += pen;
                liquidatorPart += pen * m.liquidatorSharePpm / MarginMath.PPM;
            }
            mask >>= 1;
        }
        a.marketMask = left;
    }

    /// @dev One position (or its slice) moves at the margin price: the account closes `size` for its
    ///      value rounded down (against the account), the liquidator takes `size` at that cost basis.
    function _takeOverPosition(bytes32 key, bytes32 liqKey, uint256 market)
        internal
        returns (int256 realized, uint256 notional, bool left)
    {
        uint256 price = _marginPrice(market, false);
        int256 size;
        int256 quote;
        {
            Position storage p = positions[key][market];
            size = _liquidationSize(market, p.sizeBase);
            quote = size.value(price);
            realized = _applyFill(p, -size, -quote);
            left = p.sizeBase != 0;
        }
        if (!left) delete positions[key][market];
        _fillWithoutVenue(liqKey, market, size, quote);
        notional = MarginMath.notional(size, price);
        _emitTakenOver(key, liqKey, market, size, price, quote);
    }

    function _emitTakenOver(bytes32 key, bytes32 liqKey, uint256 market, int256 size, uint256 price, int256 quote)
        internal
    {
        AccountData storage a = accounts[key];
        emit PositionTakenOver(a.owner, a.subaccount, market, msg.sender, accounts[liqKey].subaccount, size, price, quote);
    }

    // -------------------------------------------------- backstop internals

    /// @dev The backstop vault's key, opening the vault on first use (else settling its funding).
    function _openVault() internal returns (bytes32 vault) {
        vault = vaultKey;
        AccountData storage v = accounts[vault];
        if (v.mode == MarginMode.NONE) {
            v.mode = MarginMode.CROSS;
            v.owner = address(this);
            subaccountCount[address(this)] = 1;
            emit SubaccountOpened(address(this), 0, MarginMode.CROSS, 0);
        } else {
            _settleAccount(address(this), 0, vault);
        }
    }

    /// @dev Move every position of the account to the vault at the margin price; returns the PnL the
    ///      account realizes (its value rounded down, against the account).
    function _moveToVault(address accountOwner, uint32 subaccount, bytes32 key, bytes32 vault)
        internal
        returns (int256 realized)
    {
        AccountData storage a = accounts[key];
        uint256 mask = a.marketMask;
        for (uint256 market = 0; mask != 0; ++market) {
            if (mask & 1 == 1) {
                Position storage p = positions[key][market];
                int256 size = p.sizeBase;
                uint256 price = _marginPrice(market, false);
                int256 quote = size.value(price);
                realized += quote - p.openNotional;
                delete positions[key][market];
                _fillWithoutVenue(vault, market, size, quote);
                emit BackstopTakeover(accountOwner, subaccount, market, size, price, quote);
            }
            mask >>= 1;
        }
        a.marketMask = 0;
    }

    /// @dev The account `to` (the backstop vault, or a liquidator taking over) buys `size` (sells
    ///      when negative) for `quote` with no venue trade, merging with what it holds; a netting
    ///      part realizes its PnL against the counterparty fund.
    function _fillWithoutVenue(bytes32 to, uint256 market, int256 size, int256 quote) internal {
        AccountData storage v = accounts[to];
        Position storage vp = positions[to][market];
        if (vp.sizeBase == 0) _startPosition(v, vp, to, market);
        int256 r = _applyFill(vp, size, quote);
        _setMarketBit(v, market, vp.sizeBase != 0);
        if (vp.sizeBase == 0) delete positions[to][market];
        if (r != 0) _realize(to, r);
    }

    // ---------------------------------------------- auto-deleveraging internals

    /// @dev Close the bankrupt account's position in `market` at its bankruptcy price against opposite
    ///      positions in profit, best ADL index first; close what is left on the venue.
    function _deleverageMarket(AdlRun memory run, uint256 market) internal {
        AdlMarket memory m = _adlMarket(run, market);
        Queue memory queue = _adlQueue(run.key, market, m.size, m.price);
        Position storage pb = positions[run.key][market];
        while (pb.sizeBase != 0 && queue.size != 0) {
            _adlFill(run, m, queue.cands[_pop(queue)]);
        }
        int256 rest = pb.sizeBase;
        if (rest != 0) {
            int256 quoteDelta = markets[market].venue.swap(-rest);
            int256 r = _applyFill(pb, -rest, quoteDelta);
            run.realized += r;
            run.venueNotional += MarginMath.abs(quoteDelta);
            emit PositionLiquidated(run.owner, run.subaccount, market, -rest, quoteDelta, r, 0, 0);
        }
        delete positions[run.key][market];
    }

    /// @dev The bankrupt position in `market` and its bankruptcy value: what the account receives for
    ///      all of it (signed like its size) is the value at the margin price plus its share of the
    ///      deficit (by notional, rounded down so the account never ends above zero), never past a
    ///      zero price.
    function _adlMarket(AdlRun memory run, uint256 market) internal view returns (AdlMarket memory m) {
        m.market = market;
        m.price = _marginPrice(market, false);
        m.size = positions[run.key][market].sizeBase;
        m.absSize = MarginMath.abs(m.size);
        m.mm = markets[market].maintenanceMarginPpm;
        int256 val = m.size.value(m.price);
        m.target = val + MarginMath.mulDivFloor(run.deficit, MarginMath.notional(m.size, m.price), run.totalNotional);
        if ((m.size > 0 && m.target < 0) || (m.size < 0 && m.target > 0)) m.target = 0;
        m.extra = m.target - val;
    }

    /// @dev Opposite positions in profit (at the margin price) of healthy accounts with equity above
    ///      their maintenance requirement, with Hyperliquid's ADL index:
    ///      (mark / entry for longs, entry / mark for shorts) x notional / equity.
    function _adlQueue(bytes32 bankrupt, uint256 market, int256 size, uint256 price)
        internal
        view
        returns (Queue memory queue)
    {
        bytes32[] storage list = holders[market];
        uint256 len = list.length;
        Candidate[] memory cands = new Candidate[](len);
        uint256 n;
        for (uint256 i = 0; i < len; ++i) {
            bytes32 k = list[i];
            if (k == bankrupt || k == vaultKey) continue;
            Position storage p = positions[k][market];
            int256 c = p.sizeBase;
            if (c == 0 || (c > 0) == (size > 0)) continue;
            int256 basis = p.openNotional;
            if (c.value(price) - basis <= 0) continue;
            Health memory hc = _health(k, false);
            if (hc.equity <= int256(hc.maintenanceRequirement + ADL_SLACK)) continue;
            uint256 equity = uint256(hc.equity);
            uint256 notional = MarginMath.notional(c, price);
            uint256 entry = MarginMath.abs(basis);
            if (entry == 0) entry = 1;
            uint256 score = c > 0 ? notional * notional * 1e18 / (entry * equity) : entry * 1e18 / equity;
            cands[n++] = Candidate({key: k, score: score, headroom: equity - hc.maintenanceRequirement});
        }
        queue = Queue({cands: cands, heap: new uint256[](n), size: n});
        for (uint256 i = 0; i < n; ++i) {
            queue.heap[i] = i;
        }
        for (uint256 i = n / 2; i > 0; --i) {
            _siftDown(queue, i - 1);
        }
    }

    /// @dev Candidate `i` goes before `j`: higher score, ties to the lower account key.
    function _ranksBefore(Candidate[] memory cands, uint256 i, uint256 j) internal pure returns (bool) {
        return cands[i].score > cands[j].score
            || (cands[i].score == cands[j].score && uint256(cands[i].key) < uint256(cands[j].key));
    }

    function _siftDown(Queue memory q, uint256 i) internal pure {
        while (true) {
            uint256 first = 2 * i + 1;
            if (first >= q.size) return;
            if (first + 1 < q.size && _ranksBefore(q.cands, q.heap[first + 1], q.heap[first])) first += 1;
            if (!_ranksBefore(q.cands, q.heap[first], q.heap[i])) return;
            (q.heap[i], q.heap[first]) = (q.heap[first], q.heap[i]);
            i = first;
        }
    }

    /// @dev Remove and return the best-ranked candidate's index.
    function _pop(Queue memory q) internal pure returns (uint256 best) {
        best = q.heap[0];
        q.size -= 1;
        q.heap[0] = q.heap[q.size];
        _siftDown(q, 0);
    }

    /// @dev The largest size (base units) a counterparty with `headroom` = equity - maintenance can
    ///      close at the bankruptcy price and stay at or above maintenance. Closing f of the position
    ///      costs it f x extra / |size| against the margin price (plus at most 2 units of rounding) and
    ///      lowers its requirement by f x price x mm / 1e26 (less at most 2 units), so it stays
    ///      healthy while f x (extra x 1e26 - |size| x price x mm) <= (headroom - 4) x |size| x 1e26.
    function _adlCap(uint256 headroom, int256 extra, uint256 absSize, uint256 price, uint256 mm)
        internal
        pure
        virtual
        returns (uint256)
    {
        if (headroom <= ADL_SLACK) return 0;
        int256 denom = extra * 1e26 - int256(absSize * price * mm);
        if (denom <= 0) return type(uint256).max;
        return (headroom - ADL_SLACK) * absSize * 1e26 / uint256(denom);
    }

    /// @dev One fill: the counterparty `c` closes what it can of its opposite position (at most its
    ///      cap) against the bankrupt account at the bankruptcy price, rounded against the counterparty.
    function _adlFill(AdlRun memory run, AdlMarket memory m, Candidate memory c) internal {
        // The counterparty trades `sizeDelta` (closing, signed like the bankrupt position) and pays
        // `quote` (+ paid, - received); the bankrupt account trades and pays the opposite.
        int256 sizeDelta = _adlFillSize(
            positions[run.key][m.market].sizeBase,
            positions[c.key][m.market].sizeBase,
            _adlCap(c.headroom, m.extra, m.absSize, m.price, m.mm)
        );
        if (sizeDelta == 0) return;
        int256 quote = MarginMath.mulDivCeilSigned(m.target, MarginMath.abs(sizeDelta), m.absSize);
        _counterpartyFill(c.key, m.market, sizeDelta, quote);
        run.realized += _applyFill(positions[run.key][m.market], -sizeDelta, -quote);
        run.deleveragedNotional += MarginMath.abs(quote);
        AccountData storage ca = accounts[c.key];
        emit Deleveraged(m.market, run.owner, run.subaccount, ca.owner, ca.subaccount, -sizeDelta, -quote);
        if (_health(c.key, false).liquidatable) revert AdlBrokeInvariant();
    }

    /// @dev min(|bankrupt size|, |counterparty size|, cap), signed like the bankrupt position.
    function _adlFillSize(int256 bankruptSize, int256 counterpartySize, uint256 cap) internal pure returns (int256) {
        uint256 f = MarginMath.abs(bankruptSize);
        uint256 c = MarginMath.abs(counterpartySize);
        if (c < f) f = c;
        if (cap < f) f = cap;
        return bankruptSize > 0 ? int256(f) : -int256(f);
    }

    /// @dev Settle the counterparty's funding, then apply its closing fill and realize its PnL.
    function _counterpartyFill(bytes32 cpKey, uint256 market, int256 sizeDelta, int256 quote) internal {
        AccountData storage ca = accounts[cpKey];
        _settleAccount(ca.owner, ca.subaccount, cpKey);
        Position storage pc = positions[cpKey][market];
        int256 realized = _applyFill(pc, sizeDelta, quote);
        if (pc.sizeBase == 0) {
            delete positions[cpKey][market];
            _setMarketBit(ca, market, false);
        }
        if (realized != 0) _realize(cpKey, realized);
    }
}
