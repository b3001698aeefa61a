// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IPriceFeed} from "./IPriceFeed.sol";
import {IPriceVenue} from "./IPriceVenue.sol";

/// @title IMarginExchange
/// @notice The external surface of MarginExchange: its public types, custom errors, events and
///         functions (perpetual futures settled in one collateral token, CROSS and ISOLATED
///         subaccounts, oracle-priced margin checks, permissionless liquidation and the rest of the
///         liquidation waterfall: partial liquidation, backstop takeover, insurance fund,
///         auto-deleveraging and socialized loss; every waterfall step is off by default).
/// @dev Units: collateral and quote amounts in collateral units (6 decimals), position sizes in base
///      units (18 decimals), prices with 8 decimals, fractions in parts per million (ppm).
///      `contracts/artifacts/IMarginExchange.json` holds this interface's ABI (no bytecode).
interface IMarginExchange {
    // ------------------------------------------------------------------ types

    /// @notice How a subaccount's collateral is shared.
    enum MarginMode {
        NONE,
        CROSS,
        ISOLATED
    }

    /// @notice Which price margin checks use: the oracle (INDEX); the robust mark price (MARK):
    ///         median(index, venue price, index x (1 + EMA of the venue/index basis)), as
    ///         Hyperliquid's mark price; or the venue's raw marginal price (VENUE).
    enum PriceSource {
        INDEX,
        MARK,
        VENUE
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
        uint32 partialCloseFactorPpm; // share of a large position one liquidation closes; 0 = full close
        uint64 fullCloseNotional; // collateral units: positions with notional at or below are closed in full
        uint32 markHalfLifeS; // MARK: half-life of the EMA of the venue/index basis (s); > 0 when MARK
    }

    /// @notice Exchange-wide switches of the liquidation waterfall (all off when zero).
    struct RiskConfig {
        uint32 backstopThresholdPpm; // backstop takeover when equity < threshold x maintenance; 0 = off
        bool adlEnabled; // auto-deleveraging when the insurance fund cannot cover an account
    }

    /// @notice A market: its oracle, venue, risk parameters and funding state.
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

    /// @notice A subaccount: its margin mode, isolated market, open-market mask and collateral.
    struct Account {
        MarginMode mode;
        uint32 isolatedMarket;
        uint256 marketMask; // bit m set = open position in market m
        int256 collateral; // collateral units; negative only after realized losses beyond it
    }

    /// @notice The state of a market's basis EMA (MARK margin price): a time-weighted EMA kept as
    ///         numerator / denominator (Hyperliquid's formula), with weights 2^(-age / half-life).
    struct MarkBasis {
        int128 numerator; // sum of basis samples (1e18 = 100%) x seconds x weight
        uint128 denominator; // sum of seconds x weight, scaled by 1e18
        uint64 updatedAt; // time of the last sample
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
    /// @notice Market parameters out of range (`code` names the check; see `MarginExchange._validate`).
    error InvalidMarketParams(uint8 code);
    /// @notice No more markets can be added.
    error TooManyMarkets(uint256 limit);
    /// @notice Batch arrays of different lengths.
    error LengthMismatch(uint256 owners, uint256 subaccounts);
    /// @notice A risk configuration out of range (backstop threshold above 100%).
    error InvalidRiskConfig(uint32 backstopThresholdPpm);
    /// @notice The venue does not name this exchange as its only trader.
    error ForeignVenue(address venue);
    /// @notice The counterparty fund would end a transaction below zero.
    error CounterpartyFundExhausted(int256 counterpartyFund);
    /// @notice Backstop liquidation is switched off (threshold 0).
    error BackstopDisabled();
    /// @notice Backstop liquidation of an account whose equity is at or above the backstop threshold.
    error AboveBackstopThreshold(int256 equity, uint256 thresholdRequirement);
    /// @notice The account holds no position.
    error NothingToLiquidate(address owner, uint32 subaccount);
    /// @notice The protocol's backstop vault cannot be liquidated, taken over or deleveraged.
    error ProtectedAccount();
    /// @notice The account's deficit exceeds the insurance fund: auto-deleveraging comes first.
    error DeleverageRequired(int256 equity, uint256 insuranceFund);
    /// @notice Auto-deleveraging is switched off.
    error AdlDisabled();
    /// @notice Auto-deleveraging of an account the insurance fund can still cover.
    error InsuranceCanCover(int256 equity, uint256 insuranceFund);
    /// @notice A deleveraging fill would leave its counterparty liquidatable (an assertion: never
    ///         raised by a correct exchange).
    error AdlBrokeInvariant();
    /// @notice After a takeover the liquidator's subaccount would be below its initial-margin
    ///         requirement: its capital cannot carry the positions it took over.
    error LiquidatorMarginShort(int256 equity, uint256 initialRequirement);

    // ---------------------------------------------------------------- events

    /// @notice A market was listed.
    event MarketAdded(uint256 indexed market, address feed, address venue, MarketParams params);
    /// @notice A market's parameters changed.
    event MarketParamsUpdated(uint256 indexed market, MarketParams params);
    /// @notice A market's basis EMA took a sample (MARK margin price): `sampleWad` =
    ///         venue / index - 1 (1e18 = 100%) held since the last sample, weighted by the seconds
    ///         since then; `emaBasisWad` is the EMA after it, `numerator` and `denominator` its state.
    event MarkBasisUpdated(
        uint256 indexed market,
        int256 sampleWad,
        int256 emaBasisWad,
        int256 numerator,
        uint256 denominator,
        uint256 timestamp
    );
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
    /// @notice One position closed, in full or in part, on its venue by a liquidation (or by
    ///         auto-deleveraging when opposite positions run out). `sizeClosed` is the trade's signed
    ///         size (- for a long); `newSize` and `newOpenNotional` are what is left (0 when closed).
    event PositionLiquidated(
        address indexed owner,
        uint32 indexed subaccount,
        uint256 indexed market,
        int256 sizeClosed,
        int256 quoteDelta,
        int256 realizedPnl,
        int256 newSize,
        int256 newOpenNotional
    );
    /// @notice An account was liquidated; `isPartial` is true when a position stays open.
    event Liquidated(
        address indexed owner,
        uint32 indexed subaccount,
        address indexed liquidator,
        uint256 notionalClosed,
        uint256 penaltyPaid,
        uint256 liquidatorReward,
        uint256 insuranceShare,
        uint256 insuranceCover,
        uint256 badDebt,
        bool isPartial
    );
    /// @notice Negative equity the insurance fund could not cover (socialized to the counterparty fund).
    event BadDebtRecorded(address indexed owner, uint32 indexed subaccount, uint256 amount, uint256 totalBadDebt);
    /// @notice The insurance fund was topped up.
    event InsuranceDeposited(address indexed from, uint256 amount, uint256 insuranceFund);
    /// @notice The counterparty (virtual AMM liquidity) fund was topped up.
    event CounterpartyFunded(address indexed from, uint256 amount, int256 counterpartyFund);
    /// @notice The exchange-wide waterfall switches changed.
    event RiskConfigUpdated(RiskConfig config);
    /// @notice One position moved to the backstop vault at the margin price `priceE8`: the account
    ///         closes `size` and receives `quote` (its value, rounded down), the vault takes `size`
    ///         at a cost basis of `quote` (signed like `size`).
    event BackstopTakeover(
        address indexed owner, uint32 indexed subaccount, uint256 indexed market, int256 size, uint256 priceE8, int256 quote
    );
    /// @notice One position (or its liquidation slice) moved to the liquidator's CROSS subaccount at
    ///         the margin price `priceE8`, with no venue trade: the account closes `size` and receives
    ///         `quote` (its value, rounded down; signed like `size`), the liquidator takes `size` at a
    ///         cost basis of `quote`.
    event PositionTakenOver(
        address indexed owner,
        uint32 indexed subaccount,
        uint256 indexed market,
        address liquidator,
        uint32 liquidatorSubaccount,
        int256 size,
        uint256 priceE8,
        int256 quote
    );
    /// @notice An account was taken over by the backstop vault: `equity` is what was left after its
    ///         positions moved (collateral units); a positive rest went to the vault (`marginToVault`),
    ///         a deficit to the insurance fund (`insuranceCover`) and then to bad debt (`badDebt`).
    event BackstopLiquidated(
        address indexed owner,
        uint32 indexed subaccount,
        address indexed caller,
        int256 equity,
        uint256 marginToVault,
        uint256 insuranceCover,
        uint256 badDebt
    );
    /// @notice One auto-deleveraging fill at the bankrupt account's bankruptcy price, with no venue
    ///         trade: the bankrupt account trades `size` (signed, - when its long is closed) and pays
    ///         `quote` (+ paid, - received); its counterparty trades -size and pays -quote.
    event Deleveraged(
        uint256 indexed market,
        address indexed owner,
        uint32 subaccount,
        address indexed counterpartyOwner,
        uint32 counterpartySubaccount,
        int256 size,
        int256 quote
    );
    /// @notice An account was auto-deleveraged: `sizeDeleveragedNotional` is the notional closed
    ///         against counterparties (at bankruptcy prices), `notionalOnVenue` what was closed on the
    ///         venues when opposite positions ran out; the deficit left went to the insurance fund
    ///         (`insuranceCover`) and then to bad debt (`badDebt`).
    event AccountDeleveraged(
        address indexed owner,
        uint32 indexed subaccount,
        address indexed caller,
        uint256 sizeDeleveragedNotional,
        uint256 notionalOnVenue,
        uint256 insuranceCover,
        uint256 badDebt
    );

    // ------------------------------------------------------ constants, state

    /// @notice At most this many markets (positions are tracked in a 32-bit mask).
    function MAX_MARKETS() external view returns (uint256);

    /// @notice At most this many subaccounts per owner.
    function MAX_SUBACCOUNTS() external view returns (uint256);

    /// @notice The settlement token.
    function collateralToken() external view returns (IERC20);

    /// @notice The account allowed to list markets and change their parameters.
    function owner() external view returns (address);

    /// @notice Number of subaccounts each owner has opened.
    /// @param accountOwner the owner
    function subaccountCount(address accountOwner) external view returns (uint256);

    /// @notice Sum of all accounts' collateral (collateral units).
    function totalCollateral() external view returns (int256);

    /// @notice Insurance fund (collateral units).
    function insuranceFund() external view returns (uint256);

    /// @notice Liquidity behind the venues (collateral units): it pays traders' realized profit and
    ///         funding, receives their realized losses and absorbs bad debt the insurance fund cannot cover.
    function counterpartyFund() external view returns (int256);

    /// @notice Cumulative bad debt (collateral units).
    function totalBadDebt() external view returns (uint256);

    // ------------------------------------------------------------ governance

    /// @notice List a market. Owner only.
    /// @param feed the market's oracle (8 decimals)
    /// @param venue the market's price venue (the exchange must be its only trader)
    /// @param params risk parameters, validated
    /// @return market the new market id
    function addMarket(IPriceFeed feed, IPriceVenue venue, MarketParams calldata params)
        external
        returns (uint256 market);

    /// @notice Change a market's risk parameters (funding accrues at the old ones first). Owner only.
    /// @param market market id
    /// @param params new parameters, validated
    function setMarketParams(uint256 market, MarketParams calldata params) external;

    /// @notice Set the exchange-wide waterfall switches (backstop threshold, auto-deleveraging).
    ///         Owner only. All zero (the default) keeps liquidation as the only step before the
    ///         insurance fund and socialized loss.
    /// @param config the new configuration; `backstopThresholdPpm` at most 1e6
    function setRiskConfig(RiskConfig calldata config) external;

    /// @notice Add `amount` collateral units to the insurance fund (anyone).
    /// @param amount collateral units, pulled from the caller
    function depositInsurance(uint256 amount) external;

    /// @notice Add `amount` collateral units to the counterparty fund behind the venues (anyone).
    /// @param amount collateral units, pulled from the caller
    function fundCounterparty(uint256 amount) external;

    // ------------------------------------------------------------- accounts

    /// @notice Open subaccount `subaccount` of the caller in `mode`. ISOLATED subaccounts trade only
    ///         `isolatedMarket`; for CROSS it is ignored.
    /// @param subaccount caller-chosen id
    /// @param mode CROSS or ISOLATED
    /// @param isolatedMarket the one market of an ISOLATED subaccount
    function openSubaccount(uint32 subaccount, MarginMode mode, uint32 isolatedMarket) external;

    /// @notice Deposit `amount` collateral units into the caller's subaccount.
    /// @param subaccount the caller's subaccount
    /// @param amount collateral units, pulled from the caller (needs an ERC-20 allowance)
    function deposit(uint32 subaccount, uint256 amount) external;

    /// @notice Withdraw `amount` collateral units. Only collateral (not unrealized profit) can leave,
    ///         and the account must still meet its initial-margin requirement afterwards.
    /// @param subaccount the caller's subaccount
    /// @param amount collateral units sent to the caller
    function withdraw(uint32 subaccount, uint256 amount) external;

    /// @notice Move collateral between two of the caller's subaccounts (the source must still meet
    ///         its initial-margin requirement afterwards).
    /// @param fromSubaccount source subaccount
    /// @param toSubaccount destination subaccount (must be open)
    /// @param amount collateral units
    function transferCollateral(uint32 fromSubaccount, uint32 toSubaccount, uint256 amount) external;

    // ---------------------------------------------------------------- trading

    /// @notice Trade `sizeDelta` base units (+ buy, - sell) of `market` on its venue. The trade may
    ///         increase, reduce or flip the position. A risk-increasing trade (the position grows or
    ///         flips) must leave the account at or above its initial-margin requirement; a reducing
    ///         trade is always allowed.
    /// @param subaccount the caller's subaccount
    /// @param market market id
    /// @param sizeDelta base units, 18 decimals
    /// @param limitPriceE8 worst acceptable average price: a maximum for buys, a minimum for sells
    function trade(uint32 subaccount, uint256 market, int256 sizeDelta, uint256 limitPriceE8) external;

    // ------------------------------------------------------------ liquidation

    /// @notice Liquidate an account whose equity is below its maintenance requirement: close its
    ///         positions on the venues (in full, or a `partialCloseFactorPpm` slice of a position whose
    ///         notional is above its market's `fullCloseNotional`), pay the penalty on the notional
    ///         closed from what equity is left (liquidator share to the caller, the rest to the
    ///         insurance fund). When no position is left, negative equity is covered by the insurance
    ///         fund and what the fund cannot cover is recorded as bad debt. With auto-deleveraging on,
    ///         reverts `DeleverageRequired` when the closes would leave a deficit the fund cannot cover.
    /// @param accountOwner owner of the account
    /// @param subaccount its subaccount id
    function liquidate(address accountOwner, uint32 subaccount) external;

    /// @notice Liquidate by takeover (as dYdX v3, Drift v2 and Mango do): every position of an account
    ///         below maintenance (or its `partialCloseFactorPpm` slice) moves to the caller's CROSS
    ///         subaccount `liquidatorSubaccount` at the margin price, with no venue trade. The penalty
    ///         on the notional taken over (at the margin price) is paid and split as in `liquidate`
    ///         (the liquidator's share is sent to the caller); insurance and bad debt as in
    ///         `liquidate`. The caller's subaccount must then meet its initial-margin requirement
    ///         (`LiquidatorMarginShort`): a liquidator needs the capital to carry what it takes over.
    ///         With auto-deleveraging on, reverts `DeleverageRequired` when the insurance fund cannot
    ///         cover the account's deficit at margin prices.
    /// @param accountOwner owner of the account
    /// @param subaccount its subaccount id
    /// @param liquidatorSubaccount the caller's CROSS subaccount that takes the positions
    function takeover(address accountOwner, uint32 subaccount, uint32 liquidatorSubaccount) external;

    /// @notice Hand an account whose equity is below `backstopThresholdPpm` x its maintenance
    ///         requirement to the backstop vault (anyone may call): every position moves to the vault
    ///         at the margin price with no venue trade, a positive rest of the account's equity goes
    ///         to the vault, a deficit to the insurance fund and then to bad debt. With
    ///         auto-deleveraging on, reverts `DeleverageRequired` when the insurance fund cannot cover
    ///         the account's deficit.
    /// @param accountOwner owner of the account
    /// @param subaccount its subaccount id
    function backstopLiquidate(address accountOwner, uint32 subaccount) external;

    /// @notice Auto-deleverage an account the insurance fund cannot cover at margin prices, or whose
    ///         liquidation would revert `DeleverageRequired` (anyone may call): close all of its
    ///         positions at its bankruptcy prices against opposite positions in profit, ranked by
    ///         (mark/entry for longs, entry/mark for shorts) x notional / equity, each counterparty
    ///         capped so it stays above maintenance; what no counterparty takes is closed on the venue.
    ///         The account ends at zero: a deficit goes to the insurance fund and then to bad debt, a
    ///         surplus (rounding, or a venue close better than the bankruptcy price) to the insurance
    ///         fund. No liquidation penalty.
    /// @param accountOwner owner of the account
    /// @param subaccount its subaccount id
    function deleverage(address accountOwner, uint32 subaccount) external;

    // ------------------------------------------------------------------ views

    /// @notice Number of listed markets.
    function marketCount() external view returns (uint256);

    /// @notice The exchange-wide waterfall switches.
    function riskConfig() external view returns (RiskConfig memory);

    /// @notice The protocol's backstop vault account: (this exchange, subaccount 0), CROSS, opened on
    ///         the first backstop takeover; never liquidated and exempt from margin checks.
    /// @return vaultOwner the exchange's address
    /// @return vaultSubaccount always 0
    function backstopVault() external view returns (address vaultOwner, uint32 vaultSubaccount);

    /// @notice Accounts that ever held a position in `market` (append-only; may hold none now).
    /// @param market market id
    /// @return count length of the list
    function holderCount(uint256 market) external view returns (uint256 count);

    /// @notice The `index`-th account that ever held a position in `market`.
    /// @param market market id
    /// @param index position in the list, below `holderCount(market)`
    /// @return accountOwner owner
    /// @return subaccount subaccount id
    function holderAt(uint256 market, uint256 index) external view returns (address accountOwner, uint32 subaccount);

    /// @notice A market's feed, venue, parameters and funding state.
    /// @param market market id
    function getMarket(uint256 market) external view returns (Market memory);

    /// @notice A subaccount's mode, isolated market, collateral and open-market mask.
    /// @param accountOwner owner
    /// @param subaccount subaccount id
    function getAccount(address accountOwner, uint32 subaccount) external view returns (Account memory);

    /// @notice A subaccount's position in `market` (zero if none).
    /// @param accountOwner owner
    /// @param subaccount subaccount id
    /// @param market market id
    function getPosition(address accountOwner, uint32 subaccount, uint256 market)
        external
        view
        returns (Position memory);

    /// @notice Health of one account at current margin prices (funding accrued to now, oracle age
    ///         not enforced so that views never revert).
    /// @param accountOwner owner
    /// @param subaccount subaccount id
    function accountHealth(address accountOwner, uint32 subaccount) external view returns (Health memory);

    /// @notice Health of many accounts in one call (for liquidators).
    /// @param owners account owners
    /// @param subaccounts subaccount ids, same length as `owners`
    /// @return out one health per account, in the order given
    function healthOf(address[] calldata owners, uint32[] calldata subaccounts)
        external
        view
        returns (Health[] memory out);

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
        returns (uint256);

    /// @notice The oracle (index) price of `market`, 8 decimals, without the age check.
    /// @param market market id
    function indexPriceE8(uint256 market) external view returns (uint256);

    /// @notice The price margin checks of `market` use now, 8 decimals, without the age check.
    /// @param market market id
    function marginPriceE8(uint256 market) external view returns (uint256);

    /// @notice The state of `market`'s basis EMA as last stored (used when its margin price is MARK).
    /// @param market market id
    function markBasis(uint256 market) external view returns (MarkBasis memory);
}
