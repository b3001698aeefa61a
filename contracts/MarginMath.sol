// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title MarginMath
/// @notice Fixed-point helpers with explicit rounding directions. Units used across liqsim:
///         base 18 decimals, quote/collateral 6 decimals, prices 8 decimals, fractions in ppm.
///         value (quote units) = base * priceE8 / 1e20.
library MarginMath {
    uint256 internal constant PPM = 1e6;
    uint256 internal constant VALUE_SCALE = 1e20; // 1e18 base * 1e8 price / 1e6 quote
    uint256 internal constant WAD = 1e18; // fixed-point one (basis, EMA weights)
    uint256 internal constant LN2_WAD = 693147180559945309; // ln 2, 1e18 scale, rounded down

    /// @dev floor(a * b / d) for signed a (rounds toward -infinity: against the holder of `a`).
    function mulDivFloor(int256 a, uint256 b, uint256 d) internal pure returns (int256) {
        int256 num = a * int256(b);
        int256 q = num / int256(d);
        if (num < 0 && q * int256(d) != num) q -= 1;
        return q;
    }

    /// @dev ceil(a * b / d) for unsigned values (requirements and fees: against the account).
    function mulDivCeil(uint256 a, uint256 b, uint256 d) internal pure returns (uint256) {
        uint256 num = a * b;
        return num == 0 ? 0 : (num - 1) / d + 1;
    }

    /// @dev ceil(a * b / d) for signed a (rounds toward +infinity).
    function mulDivCeilSigned(int256 a, uint256 b, uint256 d) internal pure returns (int256) {
        return -mulDivFloor(-a, b, d);
    }

    /// @dev ceil(num / d) for signed num and positive d (rounds toward +infinity).
    function ceilDivSigned(int256 num, int256 d) internal pure returns (int256 q) {
        q = num / d;
        if (num > 0 && q * d != num) q += 1;
    }

    /// @dev |x| as uint256.
    function abs(int256 x) internal pure returns (uint256) {
        return x >= 0 ? uint256(x) : uint256(-x);
    }

    /// @dev Notional value of `sizeBase` at `priceE8` in quote units, rounded up.
    function notional(int256 sizeBase, uint256 priceE8) internal pure returns (uint256) {
        return mulDivCeil(abs(sizeBase), priceE8, VALUE_SCALE);
    }

    /// @dev Signed value of `sizeBase` at `priceE8` in quote units, rounded down (against the holder).
    function value(int256 sizeBase, uint256 priceE8) internal pure returns (int256) {
        return mulDivFloor(sizeBase, priceE8, VALUE_SCALE);
    }

    /// @dev 2^(-dt / halfLife) scaled by 1e18: whole half-lives are right shifts, the fraction r is
    ///      exp(-r ln 2) by its Taylor series, summed until a term rounds down to zero (within a few
    ///      units of 1e-18 of the exact value). `halfLife` must be positive. An EMA weight: its
    ///      rounding favours no account (sim/exchange/mark.py repeats it exactly).
    function halfLifeDecayWad(uint256 dt, uint256 halfLife) internal pure returns (uint256) {
        uint256 x = dt * WAD / halfLife;
        uint256 whole = x / WAD;
        if (whole >= 64) return 0;
        uint256 y = (x % WAD) * LN2_WAD / WAD; // in [0, ln 2)
        uint256 term = WAD;
        uint256 sum = WAD;
        for (uint256 n = 1; term != 0; ++n) {
            term = term * y / (n * WAD);
            if (n % 2 == 1) sum -= term;
            else sum += term;
        }
        return sum >> whole;
    }

    /// @dev The median of three values.
    function median3(uint256 a, uint256 b, uint256 c) internal pure returns (uint256) {
        (uint256 lo, uint256 hi) = a < b ? (a, b) : (b, a);
        if (c <= lo) return lo;
        return c < hi ? c : hi;
    }
}
